from lit_llm.train.imports import defer_metric_domains

defer_metric_domains()  # before a benchmark imports Lightning: seconds off each benchmark process's start

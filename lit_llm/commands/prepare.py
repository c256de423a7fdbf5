"""`lit-llm prepare`: the command; the work is lit_llm.data.prepare's."""

CLI = {
    "name": "prepare",
    "summary": "tokenize text files/folders/globs into LitData shards (+ tokenizer, metadata)",
    "function": "lit_llm.data.prepare:prepare",
}

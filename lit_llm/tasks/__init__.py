"""Small local lm-evaluation-harness tasks that ship with lit-llm (YAML + JSON Lines), usable offline."""

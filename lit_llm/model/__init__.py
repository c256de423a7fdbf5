"""The transformer and what defines it: ModelConfig and its presets, the GPT-2/Llama model, the next-token
objective and learning-rate schedules, sampling, the tokenizer. Plain PyTorch."""

"""`lit-llm serve`: an OpenAI-compatible completion server (FastAPI + uvicorn) on lit-llm's KV-cached sampling."""

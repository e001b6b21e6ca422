# SmolLM2 profiles for the ML-1M users that are evaluated (a test target and a training prefix),
# with the CLI's smollm defaults; resumable (the store keeps finished users). Run from the
# repository root after `seqdistill datasets prepare ml-1m runs/ml1m_smollm/dataset --k-core 5
# --split kind=global_temporal --split quantile=0.8 --split target=last`.
import sys

from seqdistill.data import PreparedDataset
from seqdistill.profiles.history import HistoryConfig
from seqdistill.profiles.llm import SMALL_MODEL_DECODING, SMALL_MODEL_ITEMS, GenerationConfig, TransformersBackend
from seqdistill.profiles.pipeline import generate_profiles
from seqdistill.profiles.smollm import converted_path

ds = PreparedDataset.load("runs/ml1m_smollm/dataset")
users = ds.test_targets[0]
users = [int(u) for u in users if ds.train_end[u] > 0]
print(len(users), "users", file=sys.stderr)
print(SMALL_MODEL_DECODING, SMALL_MODEL_ITEMS, file=sys.stderr)
cfg = GenerationConfig(**SMALL_MODEL_DECODING)
hist = HistoryConfig(style="compact", max_items=SMALL_MODEL_ITEMS)
backend = TransformersBackend(converted_path(), cfg, batch_size=8)
generate_profiles(ds, backend, "runs/ml1m_smollm/profiles", history=hist, users=users, batch_users=32)

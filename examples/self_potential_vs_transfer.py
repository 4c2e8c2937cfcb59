# %% [markdown]
# # Self-potential against transfer, from a results folder
#
# A notebook-style script (run it as is, or cell by cell in an editor that knows `# %%`). It reads
# a results folder written by a run with the strong model among the receivers, e.g.
#
#     cot-transfer run --address localhost:9000 --receivers testbed-strong,testbed-weak \
#         --cut step --problems datasets/testbed-demo.jsonl --n 8 --out runs/receivers
#
# and plots, for every problem and fraction, the strong model's potential on its own CoT
# (self-potential) against the weak model's on the same prefix (transfer), and the two mean
# curves over the fractions.
#
#     python examples/self_potential_vs_transfer.py runs/receivers [--out figure.png]

# %%
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a file, not a window: runs headless too
import matplotlib.pyplot as plt

import cot_transfer.experiment

parser = argparse.ArgumentParser(description="Plot self-potential against transfer from a results folder.")
parser.add_argument("run_dir", type=Path, help="results folder of a run with the strong model as a receiver")
parser.add_argument("--out", type=Path, help="figure to write (default RUN_DIR/self_potential_vs_transfer.png)")
parser.add_argument("--mode", default="free", help="answer mode to plot (default free)")
args = parser.parse_args()

# %% Load the folder: one DataFrame row per (problem, fraction, receiver, mode).
tables = cot_transfer.experiment.load(args.run_dir)
results = tables.results[tables.results["mode"] == args.mode]
strong_model = tables.summary.loc[tables.summary["measures"] == "self-potential", "receiver"].unique()
if len(strong_model) == 0:
    raise SystemExit(f"{args.run_dir}: the strong model is not a receiver of this run (no self-potential)")
strong_name = strong_model[0]
receivers = [name for name in results["receiver"].unique() if name != strong_name]

# %% Pair each weak receiver's row with the strong model's row on the same prefix.
self_potential = results[results["receiver"] == strong_name].set_index(["problem_id", "fraction"])["potential"]
figure, (scatter, curves) = plt.subplots(1, 2, figsize=(11, 4.5))
for receiver in receivers:
    transfer = results[results["receiver"] == receiver].set_index(["problem_id", "fraction"])["potential"]
    paired = self_potential.to_frame("self").join(transfer.to_frame("transfer"), how="inner")
    scatter.scatter(paired["self"], paired["transfer"], alpha=0.5, s=18, label=receiver)
    means = paired.groupby(level="fraction").mean()
    curves.plot(means.index, means["transfer"], marker="o", label=f"transfer to {receiver}")
means_self = self_potential.groupby(level="fraction").mean()
curves.plot(means_self.index, means_self.values, marker="s", color="black", label=f"self-potential ({strong_name})")

scatter.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
scatter.set(xlabel="self-potential (strong model on its own prefix)", ylabel="transfer (receiver on the same prefix)")
scatter.set(xlim=(-0.03, 1.03), ylim=(-0.03, 1.03), title="each (problem, fraction)")
scatter.legend(loc="upper left")
curves.set(xlabel="fraction of the CoT", ylabel="mean potential", ylim=(-0.03, 1.03), title="mean over problems")
curves.legend(loc="lower right")
figure.tight_layout()

# %% Write the figure.
target = args.out or args.run_dir / "self_potential_vs_transfer.png"
figure.savefig(target, dpi=120)
print(f"wrote {target}")

"""Soak test: SIGKILL (or SIGTERM) a real training run 10 times at random moments, resume it, compare with a
clean run.

  python scripts/kill_soak.py [--kills=10] [--steps=40] [--seed=0] [--workdir=/tmp/kill_soak]
  python scripts/kill_soak.py --signal=term --steps_per_epoch=4 --checkpoint_every_minutes=0.02

Uses a tiny random npz (64 images), batch 8, a checkpoint every epoch (2 steps by default) and --deterministic.
Prints one line per kill (which checkpoint survived; with --signal=term, the step it stopped at, its exit status
and the steps lost, i.e. the stop step minus the step the next run resumed at) and a final verdict: whether the
resumed run's weights equal an uninterrupted run's (max abs difference). Exits 1 if any checkpoint was
unreadable, a stopped run lost a step or did not exit with 75, or the weights differ.
"""

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="/tmp/kill_soak")
    p.add_argument("--signal", choices=["kill", "term"], default="kill")
    p.add_argument("--steps_per_epoch", type=int, default=2)
    p.add_argument("--checkpoint_every_minutes", type=float, default=0.0)
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    rng = np.random.RandomState(args.seed)
    npz = os.path.join(args.workdir, "tiny.npz")
    np.savez(npz, x_train=rng.randint(0, 256, (64, 28, 28)).astype(np.uint8), y_train=np.arange(64) % 10,
             x_test=rng.randint(0, 256, (20, 28, 28)).astype(np.uint8), y_test=np.arange(20) % 10)

    def cmd(run_dir):
        return [sys.executable, "-m", "tf_ssinfogan.train", "--flagfile=configs/mnist.flags", f"--run_dir={run_dir}",
                f"--npz_path={npz}", "--batch_size=8", f"--steps={args.steps}",
                f"--steps_per_epoch={args.steps_per_epoch}", "--labelled_fraction=0.25", "--checkpoint_every_epochs=1",
                "--grid_every_epochs=5", f"--checkpoint_every_minutes={args.checkpoint_every_minutes}",
                "--noexport_at_end", "--verbose=0", "--deterministic"]

    killed_dir = os.path.join(args.workdir, "killed")
    pick = random.Random(args.seed)
    made = survived = lost_any = 0
    stopped_at = None
    log_path = os.path.join(args.workdir, "last_run.log")
    while made < args.kills:
        state = os.path.join(killed_dir, "checkpoints", "checkpoint")
        before = os.path.getmtime(state) if os.path.exists(state) else 0.0
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd(killed_dir), cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:  # until this process has saved a checkpoint
            if os.path.exists(state) and os.path.getmtime(state) > before:
                break
            time.sleep(0.05)
        time.sleep(pick.uniform(0.0, 3.0))  # then anywhere: mid-step, mid-save, mid-grid
        if proc.poll() is not None:
            print("run finished before the kill; restarting from scratch would hide nothing, stopping kills")
            break
        proc.send_signal(signal.SIGTERM if args.signal == "term" else signal.SIGKILL)
        status = proc.wait()
        made += 1
        text = open(log_path).read()
        resumed = re.search(r"resumed from \S+ at step (\d+)", text)
        start = int(resumed.group(1)) if resumed else 0
        note = ""
        if stopped_at is not None:  # the previous stop's loss shows now: where this run resumed
            lost = stopped_at - start
            lost_any += lost != 0
            note = f"; previous stop lost {lost} steps (resumed at {start})"
        if args.signal == "term":
            m = re.search(r"stopped by SIGTERM at step (\d+)", text)
            stopped_at = int(m.group(1)) if m else None
            lost_any += status != 75 or m is None
            note = f"stopped at step {stopped_at}, exit status {status}" + note
        ckpt = tf.train.latest_checkpoint(os.path.join(killed_dir, "checkpoints"))
        ok = True
        if ckpt:
            try:
                tf.train.load_checkpoint(ckpt)
            except Exception:
                ok = False
        survived += ok
        print(f"{args.signal} {made}: newest checkpoint {os.path.basename(ckpt) if ckpt else None} readable={ok}"
              f"{'; ' if note else ''}{note}", flush=True)
    final = subprocess.run(cmd(killed_dir), cwd=REPO, check=True, capture_output=True, text=True)
    resumed = re.search(r"resumed from \S+ at step (\d+)", final.stderr)
    if stopped_at is not None and resumed:
        lost = stopped_at - int(resumed.group(1))
        lost_any += lost != 0
        print(f"final run resumed at step {resumed.group(1)}: last stop lost {lost} steps")
    straight = os.path.join(args.workdir, "straight")
    subprocess.run(cmd(straight), cwd=REPO, check=True, capture_output=True)

    def weights(run_dir):
        ckpt = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
        return {n: tf.train.load_variable(ckpt, n) for n, _ in tf.train.list_variables(ckpt)
                if n.startswith(("generator/", "discriminator/"))}

    a, b = weights(killed_dir), weights(straight)
    diff = max(float(np.max(np.abs(a[n] - b[n]))) for n in a)
    print(f"{args.signal}s survived: {survived}/{made}; max |resumed - uninterrupted| = {diff:.3g}"
          + (f"; stops with lost steps or a wrong exit status: {lost_any}" if args.signal == "term" else ""))
    return 0 if survived == made and diff == 0.0 and not lost_any else 1


if __name__ == "__main__":
    sys.exit(main())

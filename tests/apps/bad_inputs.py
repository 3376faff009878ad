#!/usr/bin/env python3
"""Runs spush-train and spush-gossip on many bad inputs: flags, config files, topology files,
data sets, checkpoints and output folders. Every case must end with an exit status in 1..123,
exactly one line on stderr that starts with "<program>: error: " and names what was wrong (a
keyword the case gives), and no output written or changed (a new run's folder is not created;
an existing run's files keep their bytes).

Usage: bad_inputs.py BIN_DIR [WORK_DIR]. Prints one line per failing case and a summary; exits 1
when a case fails. Standard library only; run by tests/apps/bad_inputs_test.cpp.
"""
import gzip
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib


def write_idx(path, count, rows=28, cols=28, labels=False, gz=False, magic=None, data=None):
    if labels:
        head = struct.pack(">II", magic if magic is not None else 0x801, count)
        body = data if data is not None else bytes((i * 7) % 10 for i in range(count))
    else:
        head = struct.pack(">IIII", magic if magic is not None else 0x803, count, rows, cols)
        body = data if data is not None else bytes((i * 31) % 256 for i in range(count * rows * cols))
    blob = head + body
    with open(path, "wb") as f:
        f.write(gzip.compress(blob) if gz else blob)


def make_data(d, train=256, test=64):
    os.makedirs(d, exist_ok=True)
    write_idx(os.path.join(d, "train-images-idx3-ubyte"), train)
    write_idx(os.path.join(d, "train-labels-idx1-ubyte"), train, labels=True)
    write_idx(os.path.join(d, "t10k-images-idx3-ubyte"), test)
    write_idx(os.path.join(d, "t10k-labels-idx1-ubyte"), test, labels=True)


def snapshot(path):
    """Bytes of every file below path (None when path does not exist)."""
    if not os.path.exists(path):
        return None
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read()
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, path)] = f.read()
    return out


class Runner:
    def __init__(self, bin_dir, work):
        self.bin_dir, self.work = bin_dir, work
        self.failures, self.count = [], 0

    def case(self, program, args, keyword, watch=None, expect_code=None, env=None):
        """Runs program with args (a list); checks the rule. watch: paths that must not change."""
        self.count += 1
        watch = watch or []
        before = [snapshot(p) for p in watch]
        full_env = dict(os.environ, OMP_NUM_THREADS="1")
        full_env.pop("OMPI_COMM_WORLD_SIZE", None)
        if env:
            full_env.update(env)
        try:
            r = subprocess.run([os.path.join(self.bin_dir, program)] + args, capture_output=True,
                               text=True, errors="replace", timeout=120, env=full_env,
                               cwd=self.work)
        except subprocess.TimeoutExpired:
            self.failures.append(f"{program} {args}: timed out")
            return
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        problems = []
        if not 1 <= r.returncode <= 123:
            problems.append(f"exit status {r.returncode}")
        if expect_code is not None and r.returncode != expect_code:
            problems.append(f"exit status {r.returncode}, expected {expect_code}")
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        elif not lines[0].startswith(f"{program}: error: "):
            problems.append("stderr does not start with the error prefix")
        elif keyword.lower() not in lines[0].lower():
            problems.append(f"'{keyword}' not named")
        for p, b in zip(watch, before):
            if snapshot(p) != b:
                problems.append(f"{p} changed")
                if b is None:  # a new run was made: remove it so the next cases start clean
                    shutil.rmtree(p, ignore_errors=True)
        if problems:
            self.failures.append(f"{program} {' '.join(args)}: {'; '.join(problems)}\n"
                                 f"    stderr: {r.stderr.strip()[:400]}")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    bin_dir = os.path.abspath(sys.argv[1])
    work = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="spush_bad_inputs_")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "data")
    make_data(data)
    run = Runner(bin_dir, work)
    new_out = os.path.join(work, "new_run")
    base = ["--data-dir", data, "--epochs", "1", "--batch", "16", "--quiet", "--eval-samples", "32"]

    def train(args, keyword, watch=None, code=None, out=new_out, env=None):
        run.case("spush-train", base + ["--out", out] + args, keyword, (watch or []) + [out],
                 code, env)

    # ---- flags -------------------------------------------------------------------------------
    numeric = {
        "nodes": ["0", "-1", "100000", "2147483648", "4.5", "1e3", "abc", "", "nan", "inf", "0x10",
                  " 4", "99999999999999999999"],
        "density": ["0", "-0.1", "1.5", "nan", "inf", "-inf", "", "x", "1e-400x"],
        "bits": ["0", "10", "-3", "2.5", ""],
        "eta": ["0", "2", "nan", "inf"],
        "local-steps": ["0", "-5", "1e9x"],
        "scsp-final-rounds": ["-1", "z"],
        "failure-prob": ["1", "-0.5", "nan", "2"],
        "epochs": ["0", "-1", "abc"],
        "batch": ["0", "-4", "1000000"],
        "lr": ["0", "-1", "nan", "inf", "1e999"],
        "momentum": ["1", "-0.1", "nan"],
        "weight-decay": ["-1", "inf", "nan"],
        "skew": ["-0.1", "1.1", "nan"],
        "alpha": ["0", "-1", "inf"],
        "warmup-epochs": ["-1", "5"],
        "augment-pad": ["-1", "100000"],
        "eval-samples": ["-5"],
        "groups": ["-1"],
        "group-size": ["-2"],
        "threads": ["-1", "5000", "1e9"],
        "comm-timeout": ["0", "-1", "nan", "inf", "1e300"],
        "stop-after": ["-1"],
        "seed": ["-1", "abc", "1.5", "18446744073709551616"],
        "fedavg-fraction": ["0", "1.5", "nan"],
        "gaia-threshold": ["0", "-0.1", "inf"],
        "dgc-warmup-epochs": ["-1", "x"],
        "dgc-clip": ["-1", "nan"],
        "add-drop-density": ["0", "2"],
        "dense-epochs": ["-2"],
        "skewscout-target": ["-0.1", "1.5", "nan"],
        "skewscout-samples": ["0", "1000000"],
    }
    for flag, values in numeric.items():
        for v in values:
            train([f"--{flag}={v}"], flag)
    for flag, v in [("algorithm", "gossipy"), ("compressor", "zip"), ("index-codec", "raw64"),
                    ("model", "resnet7"), ("model", ""), ("norm", "layer"), ("shortcut", "conv3"),
                    ("dataset", "mnist"), ("partition", "random"), ("lr-schedule", "cosine"),
                    ("device", "tpu"), ("transport", "tcp"), ("topology", "hypercube"),
                    ("topology", ""), ("topology", "torus:0x4"), ("topology", "torus:2x3"),
                    ("topology", "rings4"), ("schedule", "weekly"),
                    ("schedule", "epochs:0"), ("schedule", "epochs:-1"), ("schedule", "epochs:"),
                    ("schedule", "iterations:1x"), ("schedule", "epochs:99999999999999999999"),
                    ("out", ""), ("quiet", "maybe"), ("resume", "2")]:
        train([f"--{flag}={v}"] + (["--nodes", "5"] if v == "rings4" else []),
              "rings4" if v == "rings4" else flag)
    train(["--topology", "exponential", "--nodes", "6"], "exponential")
    for args, keyword in [(["--no-such-flag"], "--no-such-flag"), (["--nodes"], "--nodes"),
                          (["--density"], "--density"), (["positional"], "positional"),
                          (["-n", "4"], "-n"), (["--compressor", "qsgd", "--bits", "3"], "bits"),
                          (["--compressor", "fractional", "--bits", "1"], "bits"),
                          (["--groups", "2", "--group-size", "2"], "groups"),
                          (["--resume", "--overwrite"], "resume"),
                          (["--device", "cuda"], "device"),
                          (["--transport", "local", "--nodes", "0"], "nodes"),
                          (["--algorithm", "deepsqueeze", "--topology", "ring"], "doubly"),
                          (["--index-codec", "local16", "--global-compression", "--model",
                            "resnet20"], "local16"),
                          (["--partition", "exclusive", "--nodes", "64"], "partition exclusive"),
                          (["--algorithm", "bsp", "--local-steps", "2"], "local-steps"),
                          (["--algorithm", "dgc", "--skewscout"], "skewscout"),
                          (["--skewscout", "--skewscout-grid", "4,2"], "skewscout-grid"),
                          (["--skewscout", "--skewscout-grid", "1,x"], "skewscout-grid"),
                          (["--skewscout", "--skewscout-grid", "1.5,3"], "skewscout-grid"),
                          (["--algorithm", "ssgd-mv", "--density", "0"], "density")]:
        train(args, keyword)

    # ---- config files ------------------------------------------------------------------------
    cfg_dir = os.path.join(work, "configs")
    os.makedirs(cfg_dir, exist_ok=True)
    configs = {
        "not_json.json": ("{ nodes: 4 ", "not_json.json"),
        "array.json": ("[1, 2]", "object"),
        "empty.json": ("", "empty.json"),
        "unknown.json": ('{"nodez": 4}', "nodez"),
        "wrong_type.json": ('{"nodes": "4"}', "nodes"),
        "float_int.json": ('{"nodes": 4.5}', "nodes"),
        "huge_int.json": ('{"nodes": 1e30}', "nodes"),
        "null.json": ('{"lr": null}', "lr"),
        "nested.json": ('{"lr": {"value": 1}}', "lr"),
        "bool_num.json": ('{"quiet": 1}', "quiet"),
        "neg_seed.json": ('{"seed": -1}', "seed"),
        "bad_range.json": ('{"density": 7}', "density"),
        "binary.json": ("\x00\x01\x02\xff", "binary.json"),
        "dup_keys.json": ('{"nodes": 4, "nodes": 0}', "nodes"),
        "empty_out.json": ('{"out": ""}', "out"),
        "inf.json": ('{"lr": Infinity}', "inf.json"),
    }
    for name, (text, keyword) in configs.items():
        p = os.path.join(cfg_dir, name)
        with open(p, "w", encoding="latin-1") as f:
            f.write(text)
        train(["--config", p], keyword, watch=[p])
    train(["--config", os.path.join(cfg_dir, "missing.json")], "missing.json")
    train(["--config", cfg_dir], "configs")

    # ---- topology files ----------------------------------------------------------------------
    topo_dir = os.path.join(work, "topo")
    os.makedirs(topo_dir, exist_ok=True)
    topologies = {
        "empty.topo": ("", "nodes"),
        "no_header.topo": ("0 1 0.5\n", "nodes"),
        "huge.topo": ("nodes 2000000000\n0 1 0.5\n", "nodes"),
        "mismatch.topo": ("nodes 8\n0 1 0.5\n", "8"),
        "zero.topo": ("nodes 0\n", "node count"),
        "negative_w.topo": ("nodes 4\n0 1 -0.5\n", "negative"),
        "nan_w.topo": ("nodes 4\n0 1 nan\n", "weight"),
        "over_one.topo": ("nodes 4\n0 1 0.9\n0 2 0.9\n", "0"),
        "dup.topo": ("nodes 4\n0 1 0.5\n0 1 0.5\n", "duplicate"),
        "range.topo": ("nodes 4\n0 9 0.5\n", "range"),
        "text.topo": ("nodes 4\nzero one half\n", "integers"),
        "fields.topo": ("nodes 4\n0 1 0.5 7\n", "src dst weight"),
        "disconnected.topo": ("nodes 4\n0 1 0.5\n1 0 0.5\n2 3 0.5\n3 2 0.5\n", "connected"),
        "binary.topo": ("\x00\x01nodes\xff", "binary.topo"),
    }
    for name, (text, keyword) in topologies.items():
        p = os.path.join(topo_dir, name)
        with open(p, "w", encoding="latin-1") as f:
            f.write(text)
        train(["--topology", "file:" + p, "--nodes", "4"], keyword, watch=[p])
    train(["--topology", "file:" + os.path.join(topo_dir, "missing.topo")], "missing.topo")
    train(["--topology", "file:" + topo_dir], "topo")

    # ---- data sets ---------------------------------------------------------------------------
    def bad_data(name, mutate, keyword):
        d = os.path.join(work, "bad_data", name)
        make_data(d)
        mutate(d)
        run.case("spush-train", ["--data-dir", d, "--epochs", "1", "--batch", "16", "--quiet",
                                 "--out", new_out], keyword, [d, new_out])

    def truncate(file, n):
        def f(d):
            p = os.path.join(d, file)
            with open(p, "rb") as fh:
                b = fh.read()
            with open(p, "wb") as fh:
                fh.write(b[:n] if n >= 0 else b[:len(b) + n])
        return f

    bad_data("trunc_images", truncate("train-images-idx3-ubyte", -100), "train-images")
    bad_data("short_header", truncate("train-images-idx3-ubyte", 7), "train-images")
    bad_data("empty_labels", truncate("train-labels-idx1-ubyte", 0), "train-labels")
    bad_data("bad_magic", lambda d: write_idx(os.path.join(d, "train-images-idx3-ubyte"), 256,
                                              magic=0x1234), "train-images")
    bad_data("wrong_size", lambda d: write_idx(os.path.join(d, "train-images-idx3-ubyte"), 256,
                                               rows=32, cols=32), "train-images")
    bad_data("huge_count", lambda d: write_idx(os.path.join(d, "train-images-idx3-ubyte"),
                                               4000000000 // 784, data=b"\x00" * 784),
             "train-images")
    bad_data("count_mismatch", lambda d: write_idx(os.path.join(d, "train-labels-idx1-ubyte"),
                                                   100, labels=True), "train")
    bad_data("label_range", lambda d: write_idx(os.path.join(d, "train-labels-idx1-ubyte"), 256,
                                                labels=True, data=bytes([42] * 256)), "label")
    bad_data("no_test_images", lambda d: (write_idx(os.path.join(d, "t10k-images-idx3-ubyte"), 0),
                                          write_idx(os.path.join(d, "t10k-labels-idx1-ubyte"), 0,
                                                    labels=True)), "test set")
    bad_data("no_train_images", lambda d: (write_idx(os.path.join(d, "train-images-idx3-ubyte"), 0),
                                           write_idx(os.path.join(d, "train-labels-idx1-ubyte"), 0,
                                                     labels=True)), "train")
    bad_data("missing_file", lambda d: os.remove(os.path.join(d, "t10k-labels-idx1-ubyte")),
             "t10k-labels")

    def corrupt_gz(d):
        p = os.path.join(d, "train-images-idx3-ubyte")
        with open(p, "rb") as fh:
            b = fh.read()
        os.remove(p)
        gz = gzip.compress(b)
        with open(p + ".gz", "wb") as fh:
            fh.write(gz[: len(gz) // 2])

    bad_data("corrupt_gz", corrupt_gz, "train-images")
    bad_data("dir_as_file", lambda d: (os.remove(os.path.join(d, "train-images-idx3-ubyte")),
                                       os.mkdir(os.path.join(d, "train-images-idx3-ubyte"))),
             "train-images")
    train(["--data-dir", os.path.join(work, "nowhere")], "nowhere")
    train(["--dataset", "cifar10"], "cifar")

    # ---- output folders ----------------------------------------------------------------------
    a_file = os.path.join(work, "a_file")
    with open(a_file, "w") as f:
        f.write("not a folder\n")
    run.case("spush-train", base + ["--out", a_file], "out", [a_file])
    run.case("spush-train", base + ["--out", os.path.join(a_file, "below")], "out", [a_file])
    run.case("spush-train", base + ["--out", "/proc/spush_run"], "out")
    run.case("spush-train", base + ["--out", "/sys/spush_run"], "out")

    # An existing run, and checkpoints damaged in every way.
    existing = os.path.join(work, "existing")
    r = subprocess.run([os.path.join(bin_dir, "spush-train")] + base +
                       ["--epochs", "2", "--stop-after", "1", "--out", existing],
                       capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if r.returncode != 0:
        print("could not make the reference run:", r.stderr)
        return 1
    resume = ["--data-dir", data, "--epochs", "2", "--batch", "16", "--quiet", "--eval-samples",
              "32", "--out", existing, "--resume"]
    run.case("spush-train", base + ["--out", existing], "already holds a run", [existing])
    run.case("spush-train", resume[:-1] + ["--resume", "--overwrite"], "resume", [existing])
    run.case("spush-train", resume + ["--density", "0.5"], "density", [existing])
    run.case("spush-train", resume + ["--epochs", "5"], "epochs", [existing])
    run.case("spush-train", base + ["--out", os.path.join(work, "fresh"), "--resume"],
             "no checkpoint", [os.path.join(work, "fresh")])

    manifest_path = os.path.join(existing, "checkpoint.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    shard_path = os.path.join(existing, manifest["shards"][0]["file"])
    with open(shard_path, "rb") as f:
        shard = f.read()

    def with_manifest(text, keyword):
        with open(manifest_path, "w") as f:
            f.write(text)
        run.case("spush-train", resume, keyword, [existing])
        with open(manifest_path, "w") as f:
            json.dump(manifest, f)

    def edited(change, keyword):
        m = json.loads(json.dumps(manifest))
        change(m)
        with_manifest(json.dumps(m), keyword)

    with_manifest("", "checkpoint.json")
    with_manifest("{", "checkpoint.json")
    with_manifest("[]", "checkpoint.json")
    with_manifest("\x00\x01", "checkpoint.json")
    for key, value, keyword in [("epochs_done", -3, "progress"), ("epochs_done", 99, "progress"),
                                ("epochs_done", "one", "mistyped"), ("iteration", -1, "progress"),
                                ("iteration", 10**18, "progress"), ("in_epoch", -1, "progress"),
                                ("in_epoch", 10**9, "progress"), ("ranks", 0, "rank"),
                                ("ranks", 3, "mpirun -np 3"), ("nodes", 7, "nodes"),
                                ("elapsed_seconds", -5, "progress"), ("format", "x", "spush-train"),
                                ("shards", [], "shard"), ("shards", "none", "shard"),
                                ("version", None, "")]:
        if keyword == "":
            continue
        edited(lambda m, k=key, v=value: m.__setitem__(k, v), keyword)
    for key in ["epochs_done", "iteration", "in_epoch", "ranks", "nodes", "elapsed_seconds",
                "shards"]:
        edited(lambda m, k=key: m.pop(k), "checkpoint.json")
    edited(lambda m: m["shards"][0].__setitem__("file", "../../etc/passwd"), "shard")
    edited(lambda m: m["shards"][0].__setitem__("crc32", 1234), "checksum")
    edited(lambda m: m["shards"][0].__setitem__("bytes", 1), "bytes")
    edited(lambda m: m["shards"][0].__setitem__("crc32", -1), "checkpoint.json")

    def with_shard(data, keyword):
        with open(shard_path, "wb") as f:
            f.write(data)
        run.case("spush-train", resume, keyword, [existing])
        with open(shard_path, "wb") as f:
            f.write(shard)

    with_shard(b"", shard_path)
    with_shard(shard[: len(shard) // 2], "checksum")
    with_shard(shard[:20], shard_path)
    with_shard(shard[:-1], "checksum")
    with_shard(shard + b"x", "checksum")
    with_shard(b"SPUSHCKP" + b"\xff" * 40, shard_path)
    with_shard(b"garbage " * 100, "magic")
    flipped = bytearray(shard)
    flipped[len(shard) // 3] ^= 0x10
    with_shard(bytes(flipped), "checksum")

    # Valid checksums over bad contents: the manifest must reject the file first (its checksum
    # is recorded there); a matching manifest makes the shard's own checks speak.
    def restamp(body):
        crc = zlib.crc32(body) & 0xFFFFFFFF
        return body + struct.pack("<I", crc), crc

    def shard_meta_and_blobs(data):
        meta_len = struct.unpack_from("<Q", data, 12)[0]
        meta = json.loads(data[20:20 + meta_len])
        return meta, meta_len

    meta, meta_len = shard_meta_and_blobs(shard)
    for change, keyword in [(lambda m: m.__setitem__("epochs_done", 5), "iteration"),
                            (lambda m: m.__setitem__("rank", 3), "rank"),
                            (lambda m: m.__setitem__("params", 7), "parameters"),
                            (lambda m: m["config"].__setitem__("density", 0.5), "density"),
                            (lambda m: m.pop("config"), "mistyped")]:
        m = json.loads(json.dumps(meta))
        change(m)
        text = json.dumps(m).encode()
        body = shard[:12] + struct.pack("<Q", len(text)) + text + shard[20 + meta_len:-4]
        new_shard, crc = restamp(body)
        with open(shard_path, "wb") as f:
            f.write(new_shard)
        m2 = json.loads(json.dumps(manifest))
        m2["shards"][0]["crc32"], m2["shards"][0]["bytes"] = crc, len(new_shard)
        with open(manifest_path, "w") as f:
            json.dump(m2, f)
        run.case("spush-train", resume, keyword, [existing])
    # A NaN in the model's parameters, behind a valid checksum.
    pos = shard.find(b"algo/x")
    if pos > 0:
        body = bytearray(shard[:-4])
        start = pos + len(b"algo/x") + 8
        body[start:start + 4] = struct.pack("<f", math.nan)
        new_shard, crc = restamp(bytes(body))
        with open(shard_path, "wb") as f:
            f.write(new_shard)
        m2 = json.loads(json.dumps(manifest))
        m2["shards"][0]["crc32"], m2["shards"][0]["bytes"] = crc, len(new_shard)
        with open(manifest_path, "w") as f:
            json.dump(m2, f)
        run.case("spush-train", resume, "non-finite", [existing])
    with open(shard_path, "wb") as f:
        f.write(shard)
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    os.remove(shard_path)
    run.case("spush-train", resume, "cannot open", [existing])
    with open(shard_path, "wb") as f:
        f.write(shard)

    # ---- spush-gossip ------------------------------------------------------------------------
    gossip_cases = [
        (["--nodes", "0"], "nodes"), (["--dim", "0"], "dim"), (["--dim", "99999999999"], "dim"),
        (["--segments", "0"], "segments"), (["--segments", "300"], "segments"),
        (["--rounds", "-1"], "rounds"), (["--algorithm", "dpsgdx"], "algorithm"),
        (["--mode", "fancy"], "mode"), (["--lambda", "0"], "lambda"),
        (["--label-noise", "0.5"], "label-noise"), (["--print-every", "0"], "print-every"),
        (["--target-gap", "1e-3"], "target-gap"), (["--device", "cuda", "--mode", "logistic"],
                                                   "cuda"),
        (["--topology", "file:" + os.path.join(topo_dir, "huge.topo")], "nodes"),
        (["--nodes", "60000", "--dim", "2000000000"], "dim"),
        (["--json", "/proc/no/such/dir/x.jsonl"], "x.jsonl"),
        (["--samples", "0"], "samples"), (["--batch", "-1"], "batch"),
        (["--mode", "logistic", "--batch", "100000"], "batch"),
        (["--compressor", "qsgd", "--bits", "5"], "bits"), (["--eta", "5"], "eta"),
    ]
    for args, keyword in gossip_cases:
        run.case("spush-gossip", args + ["--rounds", "5"] if "--rounds" not in args else args,
                 keyword)

    print(f"{run.count} bad inputs, {len(run.failures)} failed")
    for f in run.failures:
        print("FAIL", f)
    if len(sys.argv) <= 2:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())

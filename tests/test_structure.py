"""The package's structure: imports point one way (no cycles), config and CLIs stay free of TensorFlow, every
code kind answers every question the rest of the package asks, and the flags come from the config fields."""

import ast
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from tf_ssinfogan import config as C

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tf_ssinfogan")


COMMANDS = {"train", "evaluate", "export", "sample", "train_classifier", "explore"}


def package_modules():
    """{dotted module name relative to the package: file path}, subpackages included (`__init__` files left out)."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        rel = os.path.relpath(folder, PACKAGE)
        prefix = "" if rel == "." else rel.replace(os.sep, ".") + "."
        for name in files:
            if name.endswith(".py") and name != "__init__.py":
                found[prefix + name[:-3]] = os.path.join(folder, name)
    return found


def package_imports():
    """{module: set of package modules it imports}, function-level imports included; dotted names relative to
    the package (`evaluation.report`)."""
    modules = package_modules()
    graph = {}
    for module, path in sorted(modules.items()):
        deps = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tf_ssinfogan"):
                base = node.module[len("tf_ssinfogan."):] if node.module != "tf_ssinfogan" else ""
                for a in node.names:
                    name = f"{base}.{a.name}" if base else a.name
                    deps.add(name if name in modules else base)
            elif isinstance(node, ast.Import):
                deps.update(a.name[len("tf_ssinfogan."):] for a in node.names if a.name.startswith("tf_ssinfogan."))
        graph[module] = deps - {module, ""}
    return graph


def unit_of(module):
    """The unit an import-direction rule speaks of: a subpackage, a command, or a shared top-level module."""
    top = module.split(".")[0]
    return "commands" if top in COMMANDS else top


# The allowed direction of imports: a unit may import the units of the layers before its own, never those of its
# own layer or later ones (each unit may import itself). A new arrow against it fails
# `test_imports_between_packages_point_one_way`: move the code, or change the layers on purpose.
LAYERS = (("config",), ("model",), ("data",), ("rundir",), ("cli",), ("evaluation", "serving"), ("training",),
          ("commands",))
ALLOWED_IMPORTS = {unit: {u for earlier in LAYERS[:i] for u in earlier} for i, layer in enumerate(LAYERS)
                   for unit in layer}


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_package_imports_have_no_cycle():
    graph = package_imports()
    assert {"config", "model.latents", "data.sources", "data.stream", "rundir.paths", "cli", "training.trainer"} <= set(graph)
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_library_modules_never_import_a_cli():
    graph = package_imports()
    for module, deps in graph.items():
        if module not in COMMANDS:
            assert not deps & COMMANDS, f"{module} imports the CLI module(s) {deps & COMMANDS}"


def arrows_against_the_layers(graph):
    """(importer unit, imported unit) pairs that `LAYERS` does not allow."""
    arrows = {(unit_of(m), unit_of(d)) for m, deps in graph.items() for d in deps if unit_of(m) != unit_of(d)}
    return sorted((a, b) for a, b in arrows if b not in ALLOWED_IMPORTS[a])


def test_imports_between_packages_point_one_way():
    graph = package_imports()
    assert set(map(unit_of, graph)) == set(ALLOWED_IMPORTS), "a unit without a rule (or a rule without a unit)"
    assert not arrows_against_the_layers(graph), f"imports against LAYERS: {arrows_against_the_layers(graph)}"


def test_the_direction_check_catches_a_new_arrow():
    graph = package_imports()
    graph["data.stream"] = graph["data.stream"] | {"training.trainer"}  # data reaching up into training
    graph["evaluation.report"] = graph["evaluation.report"] | {"serving.saved_model"}  # a sibling of its layer
    assert arrows_against_the_layers(graph) == [("data", "training"), ("evaluation", "serving")]


def test_no_folder_holds_more_than_eight_modules():
    by_folder = {}
    for module in package_modules():
        by_folder.setdefault(module.rpartition(".")[0], []).append(module)
    by_folder.pop("")  # the top level: commands and shared files
    assert max(map(len, by_folder.values())) <= 8, by_folder


def test_config_validation_and_flags_load_no_tensorflow():
    code = ("import sys\nfrom tf_ssinfogan import cli, config as C\n"
            "C.ExperimentConfig().validate()\n"
            "from absl import flags\ncli.define_config_flags()\nflags.FLAGS(['x', '--codes=a:cat:3:label'])\n"
            "assert cli.config_from_flags().latent.codes[0].dim == 3\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tensorflow_probability')]\n"
            "assert not bad, bad[:5]\nprint('OK')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-2000:]


def test_architecture_sizes_in_config_match_the_networks():
    from tf_ssinfogan.model import networks

    assert set(C.ARCHITECTURE_SIZES) == set(networks.ARCHITECTURES)
    with pytest.raises(C.ConfigError, match="needs 32x32 images"):
        C.NetworkConfig("dcgan32", (28, 28, 3)).validate()


# ------------------------------------------------------------------------------------------ flags
def test_every_config_field_has_a_flag_or_is_derived():
    from tf_ssinfogan import cli

    for section, cls in cli.SECTIONS.items():
        for field in dataclasses.fields(cls):
            assert "help" in field.metadata, f"{cls.__name__}.{field.name} has no help text (and so no flag)"
    derived = {f"{section}.{f.name}" for section, cls in cli.SECTIONS.items() for f in dataclasses.fields(cls)
               if f.metadata.get("flag", "") is None}
    assert derived == {"data.resize_to", "data.channels", "judge.batch_size", "judge.seed", "judge.learning_rate",
                       "judge.recipe", "evaluation.seed"}


def test_generated_flags_round_trip_a_config():
    from absl import flags

    from tf_ssinfogan import cli

    fv = flags.FlagValues()
    names = cli.define_config_flags(flag_values=fv)
    assert {"download", "labelled_count", "codes", "image_shape", "resize_images"} <= set(names) | set(fv)
    fv(["x", "--codes=d:cat:4:label,s:bin:2", "--image_shape=32,32,3", "--architecture=dcgan32",
        "--labelled_count=7", "--nodownload", "--source=tfds", "--resize_images", "--center_crop=30,30",
        "--precision=mixed_bfloat16", "--steps=200"])
    cfg = cli.config_from_flags(fv)
    assert cfg.latent.codes == C.parse_codes("d:cat:4:label,s:bin:2")
    assert cfg.data.labelled_count == 7 and cfg.data.tfds_download is False and cfg.data.center_crop == (30, 30)
    assert cfg.data.resize_to == (32, 32) and cfg.data.channels == 3
    assert cfg.train.precision == "mixed_bfloat16" and cfg.train.steps == 200
    fv.unparse_flags()
    fv(["x"])
    assert cli.config_from_flags(fv) == C.ExperimentConfig().validate()  # the flag defaults are the config's


def test_evaluation_flags_come_from_the_eval_and_judge_configs_and_keep_the_old_spelling():
    from absl import flags

    from tf_ssinfogan import cli

    fv = flags.FlagValues()
    cli.define_config_flags(sections=("evaluation", "judge"), run_dir=False, flag_values=fv)
    fv(["x", "--fid_samples=7", "--metrics=codes,fid", "--judge_epochs=3", "--classifier_path=j.keras"])
    assert cli.section_from_flags("evaluation", fv) == C.EvalConfig(metrics=("codes", "fid"), judge_fd_samples=7)
    assert cli.section_from_flags("judge", fv) == C.JudgeConfig(epochs=3, classifier_path="j.keras")


# ------------------------------------------------------------------------------------------ code kinds
def _codes():
    return [C.CodeSpec("d", "categorical", 4, "label"), C.CodeSpec("c", "continuous", 2),
            C.CodeSpec("b", "binary", 3, "attr")]


def test_every_kind_of_the_config_has_a_table_entry():
    from tf_ssinfogan.model import latents

    assert set(latents.KINDS) == set(C.CODE_KINDS)


@pytest.mark.parametrize("code", _codes(), ids=lambda c: c.kind)
def test_each_kind_round_trips_user_values_through_the_latent_format(code):
    import tensorflow as tf

    from tf_ssinfogan.model import latents

    kind = latents.kind_of(code)
    rng = np.random.RandomState(0)
    user = kind.numpy_values(code, rng, 6)
    latent = kind.to_latent(code, tf.constant(user)).numpy()
    assert latent.shape == (6, code.dim)
    # the prior's support: a draw from `from_uniform` lies where the TFP prior puts mass
    drawn = kind.from_uniform(code, lambda shape: tf.random.stateless_uniform(shape, [1, 2]), tf.constant(500))
    log_p = kind.prior(code).log_prob(kind.to_latent(code, drawn))
    assert np.all(np.isfinite(log_p.numpy()))
    # Q's prediction of a perfect, confident output is the value itself
    confident = {"categorical": 50.0 * (2 * latent - 1), "binary": 50.0 * (2 * latent - 1), "continuous": latent}
    pred = kind.prediction(kind.probabilities(tf.constant(confident[code.kind], tf.float32))).numpy()
    np.testing.assert_allclose(pred, user, atol=1e-6)
    kind.check_numpy(code, user)  # valid values pass


def test_kind_entropies_sweeps_and_parsing():
    from tf_ssinfogan.model import latents

    d, c, b = _codes()
    K = latents.kind_of
    assert K(d).entropy(d) == pytest.approx(np.log(4)) and K(c).entropy(c) == pytest.approx(2 * np.log(2))
    np.testing.assert_allclose(K(d).sweep(d, 4).numpy(), [0, 1, 2, 3])
    np.testing.assert_allclose(K(c).sweep(c, 3).numpy(), [-1, 0, 1])
    np.testing.assert_allclose(K(b).sweep(b, 2).numpy(), [0, 1])
    assert (K(d).traversal_dims(d), K(c).traversal_dims(c), K(b).traversal_dims(b)) == (1, 2, 3)
    assert K(d).parse(d, "3") == 3 and K(c).parse(c, "0.5") == [0.5] and K(b).parse(b, "1,0,1") == [1.0, 0.0, 1.0]
    for code, text, needle in ((d, "4", r"\[0, 4\)"), (d, "x", "not a valid value"), (c, "1,2,3", "1 or 2 values")):
        with pytest.raises(ValueError, match=needle):
            K(code).parse(code, text)
    with pytest.raises(ValueError, match="class index must be an integer in"):
        K(d).check_numpy(d, np.array([0, 4]))
    with pytest.raises(ValueError, match="expected width 2"):
        K(c).check_numpy(c, np.zeros([3, 3], np.float32))


def test_kind_label_hits_count_only_known_labels():
    import tensorflow as tf

    from tf_ssinfogan.model import latents

    d, c, b = _codes()
    hit, valid = latents.kind_of(d).label_hits(d, tf.one_hot([0, 1, 2], 4), tf.constant([0, 3, -1]))
    assert hit.numpy().tolist() == [1, 0, 0] and valid.numpy().tolist() == [1, 1, 0]
    probs = tf.constant([[0.9, 0.1, 0.8]])
    hit, valid = latents.kind_of(b).label_hits(b, probs, tf.constant([[1, 0, -1]]))
    assert hit.numpy() == pytest.approx([2 / 3]) and valid.numpy() == pytest.approx([2 / 3])
    assert latents.kind_of(c).label_hits(c, tf.zeros([1, 2]), tf.zeros([1, 2])) is None


def test_train_dry_run_loads_no_tensorflow():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "tf_ssinfogan.train",
                          "--flagfile=configs/mnist.flags", "--dry_run"], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert C.ExperimentConfig.from_dict(__import__("json").loads(out.stdout)).train.steps == 5000
    imported = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line]
    assert "tf_ssinfogan.config" in imported and not [m for m in imported if m.startswith("tensorflow")]


# ------------------------------------------------------------------------------------------ run folder
def test_run_folder_records_the_measured_labelled_ratio(tmp_path):
    from tf_ssinfogan.rundir import paths

    cfg = dataclasses.replace(C.ExperimentConfig(run_dir=str(tmp_path)),
                              data=C.DataConfig(labelled_fraction=0.01, labelled_count=0))
    assert paths.labelled_ratio(str(tmp_path), cfg) == 0.0  # no data_info.json: derived (labelled_count 0)
    paths.write_data_info(str(tmp_path), {"train_images": 200, "labelled_images": 3, "labelled_fraction": 0.015})
    assert paths.labelled_ratio(str(tmp_path), cfg) == pytest.approx(0.015)  # what training measured
    plain = C.ExperimentConfig(run_dir=str(tmp_path / "other"))
    assert paths.labelled_ratio(plain.run_dir, plain) == 0.01


def test_run_folder_paths_are_named_in_one_place():
    from tf_ssinfogan.rundir import paths

    rd = paths.RunDir("r")
    assert rd.config == os.path.join("r", "config.json") and rd.checkpoints == os.path.join("r", "checkpoints")
    assert rd.export_base == os.path.join("r", "export") and rd.eval_logs == os.path.join("r", "logs", "eval")
    modules = package_modules()
    for module in ("training.trainer", "evaluate", "export", "evaluation.report", "serving.saved_model", "train"):
        text = open(modules[module]).read()
        for name in ('"config.json"', '"checkpoints"', '"eval.json"', '"eval_history.jsonl"', '"flags.txt"'):
            assert name not in text, f"{module}.py spells the run-folder name {name}; use rundir"


def test_stream_without_labels_keeps_continuous_and_binary_targets_shaped():
    """Plain InfoGAN (no labelled example) with continuous and binary codes tied to columns (a crash before)."""
    from tf_ssinfogan.data.sources import ArraySource
    from tf_ssinfogan.data.stream import TrainStream

    rng = np.random.RandomState(0)
    labels = {"x": rng.uniform(-1, 1, 32).astype(np.float32), "b": rng.randint(0, 2, 32), "label": np.arange(32) % 3}
    src = ArraySource("t", rng.randint(0, 255, (32, 8, 8, 1)).astype(np.uint8), labels,
                      rng.randint(0, 255, (8, 8, 8, 1)).astype(np.uint8), {k: v[:8] for k, v in labels.items()})
    latent = C.LatentConfig(noise_dim=2, codes=C.parse_codes("x:cont:1:x,b:bin:1:b,k:cat:3:label"))
    stream = TrainStream(src, latent, C.DataConfig(labelled_fraction=0.0), 4, (0.0, 1.0))
    assert stream.num_labelled == 0
    assert {k: v.shape for k, v in stream.labelled_targets.items()} == {"x": (0, 1), "b": (0, 1), "label": (0,)}
    images, targets, mask = next(iter(stream.dataset(0, 1)))
    assert images.shape == (4, 8, 8, 1) and float(mask.numpy().sum()) == 0.0
    assert targets["x"].shape == (4, 1) and targets["label"].shape == (4,)


def test_the_evaluation_table_covers_every_code_kind():
    from tf_ssinfogan.evaluation import scorers

    assert set(scorers.KINDS) == set(C.CODE_KINDS)
    fields = {f.name for f in dataclasses.fields(C.EvalConfig)}
    assert all(kind.samples_setting in fields for kind in scorers.KINDS.values())
    for kind in scorers.KINDS.values():  # each kind owns its report rows and scalars
        assert kind.sample_text and callable(kind.report_rows) and callable(kind.scalars)


def test_a_run_folder_written_before_the_package_layout_changed_still_loads(tmp_path):
    """tests/fixtures/run_14478cf/config.json was written by the flat package (commit 14478cf, before the packages
    by stage): it loads, keeps its objective options, and the same configuration may resume it."""
    import shutil

    from tf_ssinfogan.rundir import paths

    run = tmp_path / "run"
    shutil.copytree(os.path.join(ROOT, "tests", "fixtures", "run_14478cf"), run)
    cfg = paths.read_config(str(run))
    assert [c.name for c in cfg.latent.codes] == ["digit", "c1", "c2"] and cfg.train.steps == 400
    assert cfg.objective.guide_head and cfg.objective.pseudo_label_weight == 0.5 and cfg.objective.instance_noise_std == 0.1
    paths.check_resume_compatible(str(run), dataclasses.replace(cfg, run_dir=str(run)))


def test_a_run_folder_written_before_the_options_moved_into_sections_loads_and_resumes(tmp_path):
    """tests/fixtures/run_e14526b (config.json, flags.txt, data_info.json) was written by commit e14526b, when the
    objective's and the judges' options were fields of the train section: they load into today's sections, the
    same configuration may resume the run, and its flags.txt reads back as a flagfile to the same configuration."""
    import json
    import shutil

    from tf_ssinfogan.rundir import paths

    run = tmp_path / "run"
    shutil.copytree(os.path.join(ROOT, "tests", "fixtures", "run_e14526b"), run)
    cfg = dataclasses.replace(paths.read_config(str(run)), run_dir=str(run))
    assert cfg.train.steps == 400 and cfg.data.labelled_per_batch == 16
    o = cfg.objective
    assert o.guide_head and o.pseudo_label_weight == 0.5 and o.pseudo_label_flip and not o.adversarial_labelled
    assert o.instance_noise_std == 0.1 and o.q_ss_fake_weight == 0.25 and not o.reuse_fakes
    assert cfg.judge.epochs == 30 and cfg.judge.augment
    paths.check_resume_compatible(str(run), cfg)
    out = subprocess.run([sys.executable, "-m", "tf_ssinfogan.train", f"--flagfile={run / 'flags.txt'}",
                          f"--run_dir={run}", "--dry_run"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert C.ExperimentConfig.from_dict(json.loads(out.stdout)) == cfg

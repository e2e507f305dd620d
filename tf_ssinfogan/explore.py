"""Latent explorer: a local web page to move a trained generator's codes and watch the image change.

  tf-ssinfogan-explore --model runs/quickstart
  python -m tf_ssinfogan.explore --model runs/quickstart/export/ssinfogan/1 --port 8080

`--model` is an exported SavedModel: a version folder, its parent (the newest version) or a run folder (its
newest export); only the export is read, so a model copied to another machine works. The page has a selector per
categorical code (with the export's class names), a toggle per binary bit, a slider per continuous dimension over
[-2, 2] (the prior is U(-1, 1); beyond it is marked), the noise seed, a grid mode (one code swept across columns,
rows of other latents: the `traverse` signature), the model card's key facts, PNG download and the
`tf-ssinfogan-sample` command that writes the same image. It listens on 127.0.0.1 (this machine only) unless
`--host` says otherwise. `--model` that is not an export, a busy port or an unusable host: a message, exit 2.
"""

from __future__ import annotations

from absl import flags

from tf_ssinfogan import cli
from tf_ssinfogan.serving import explorer

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Exported SavedModel: a version folder (runs/x/export/ssinfogan/1), its parent "
                    "(newest version) or a run folder (its newest export).")
flags.DEFINE_integer("port", 8000, "TCP port (0 picks a free one).")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on; the default is this machine only (loopback). "
                    "Another address exposes the page, without authentication, to whoever can reach it.")


def main(argv):
    del argv
    cli.require(0 <= FLAGS.port <= 65535, f"--port must be in [0, 65535], got {FLAGS.port}")
    folder = explorer.resolve_export(FLAGS.model)
    server = explorer.bind(FLAGS.host, FLAGS.port)  # before loading TensorFlow: a busy port fails fast
    try:
        print(f"loading {folder} ...", flush=True)
        explorer.attach(server, explorer.Explorer(folder))
        where = ("loopback only: this machine; --host=0.0.0.0 would open it to the network"
                 if explorer.is_loopback(FLAGS.host) else
                 f"on {FLAGS.host}: reachable from the network, without authentication")
        print(f"tf-ssinfogan-explore: serving {folder}\n  open {explorer.url_of(server)}  ({where}); Ctrl-C stops",
              flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped", flush=True)
    finally:
        server.server_close()
    return 0


def run():
    """Console script `tf-ssinfogan-explore` (same flags as `python -m tf_ssinfogan.explore`)."""
    cli.run(main, section="explorer")


if __name__ == "__main__":
    run()

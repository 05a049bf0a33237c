"""Build a model repository, serve it with tritonserver, and segment a few texts through it.

Without arguments it generates a tiny random SaT checkpoint and tokenizer (no download needed; the
sentences are then random too). With a hub id (``sat-3l-sm``) it uses the real model and tokenizer.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEXTS = [
    "This is a test This is another test. And a third one!",
    "Der Zug kam spät an. Wir warteten trotzdem.\nNeue Zeile hier.",
    "这是第一句。这是第二句。",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?", help="hub id or checkpoint directory (default: a generated tiny one)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer (default: xlm-roberta-base for hub models)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "demo_work")
    args = parser.parse_args()

    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    if args.model is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from artifacts import make_checkpoint, make_tokenizer

        model = str(make_checkpoint(workdir / "tiny-sat"))
        tokenizer = str(make_tokenizer(workdir / "tokenizer"))
        print(f"generated a tiny random SaT checkpoint at {model} (its sentences are random)")
    else:
        model, tokenizer = args.model, args.tokenizer or "facebookAI/xlm-roberta-base"

    repository = workdir / "model_repository"
    subprocess.run([sys.executable, "-m", "sat_triton.builder", "build", "--model_name_or_path", model,
                    "--tokenizer_name_or_path", tokenizer, "--output_dir", str(repository),
                    "--triton_model_name", "sat", "--device", "cpu", "--onnx_backend", "python"], check=True)

    from sat_triton.builder.server import TritonServer, free_port
    from sat_triton.client import SaT

    with TritonServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                      extra_args=["--exit-timeout-secs=3"]) as server:
        server.wait_ready(["sat", "sat_long"], timeout=180)
        print(f"tritonserver ready: gRPC {server.grpc_url}, HTTP {server.http_url}")

        import tritonclient.grpc as grpcclient

        raw = grpcclient.InferenceServerClient(server.grpc_url)
        text = grpcclient.InferInput("TEXT", [len(TEXTS)], "BYTES")
        text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=np.object_))
        result = raw.infer("sat", [text], parameters={"strip_whitespace": True})
        print("raw tritonclient call:")
        print("  SENTENCES       ", [s.decode() for s in result.as_numpy("SENTENCES")])
        print("  SENTENCE_COUNTS ", result.as_numpy("SENTENCE_COUNTS").tolist())
        print("  SENTENCE_SPANS  ", result.as_numpy("SENTENCE_SPANS").tolist())
        raw.close()

        sat = SaT(model, triton_url=server.grpc_url, triton_model_name="sat")
        served = list(sat.split(TEXTS))
        print("client.SaT:")
        for sentences in served:
            print("  ", sentences)
        sat.close()
    try:
        from wtpsplit import SaT as WtpSaT  # the reference, installed with the dev extra
    except ImportError:
        return 0
    same = list(WtpSaT(model, tokenizer_name_or_path=tokenizer).split(TEXTS)) == served
    print(f"same sentences as wtpsplit's SaT.split in-process: {same}")
    return 0 if same else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""sat-triton's benchmark, one module per step (``python bench/benchmark.py`` or ``python -m bench``).

* :mod:`bench.corpus`: the multilingual corpus generator;
  :mod:`bench.artifacts`: the tokenizer, checkpoint and wtpsplit ONNX file generated from it;
* :mod:`bench.variants`: the model repositories served (the base build, the sweep's variants);
* :mod:`bench.load`: load generation, closed loop and open loop (:mod:`bench.outcomes`: what each
  open-loop request did, and a run's summary);
* :mod:`bench.accounting`: Triton's per-model statistics and the CPU each process used, per phase;
* :mod:`bench.baselines`: wtpsplit in-process and the ONNX model alone (the ceiling, and the probes);
* :mod:`bench.serving`: the server phases of one repository;
  :mod:`bench.capacity`: the capacity curve (offered load against latency, throughput, refusals);
* :mod:`bench.report`: rows, tables and the ratios of the targets; :mod:`bench.cli`: the command line;
* :mod:`bench.steps`: the tokenizer and postprocessor steps alone, in this process.
"""

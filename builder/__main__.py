from sat_triton.builder.cli import main

raise SystemExit(main())

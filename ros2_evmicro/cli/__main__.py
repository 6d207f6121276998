from ros2_evmicro.cli import main

raise SystemExit(main())

from rsis_lite.cli import main

raise SystemExit(main())

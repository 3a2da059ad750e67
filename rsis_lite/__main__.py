from rsis_lite.commands import main

raise SystemExit(main())

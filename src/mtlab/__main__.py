from mtlab.cli.main import main

raise SystemExit(main())

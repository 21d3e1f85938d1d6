from perkamo.cli.main import main

raise SystemExit(main())

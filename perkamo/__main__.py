from perkamo.ops.cli import main

raise SystemExit(main())

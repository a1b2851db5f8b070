from armras.cli import main

raise SystemExit(main())

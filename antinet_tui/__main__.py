from antinet_tui.frontends.cli import main

raise SystemExit(main())

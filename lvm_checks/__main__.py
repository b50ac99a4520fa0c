"""`python -m lvm_checks ...`: the same as the `lvm-checks` command."""

from .cli import main

raise SystemExit(main())

import sys

from speechkit.pipeline.cli import main

sys.exit(main())

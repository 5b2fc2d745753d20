import sys

from speechkit.pipeline.runner import main

sys.exit(main())

import sys

from speechkit.runner import main

sys.exit(main())

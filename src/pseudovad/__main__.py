import sys

from pseudovad.cli import main

sys.exit(main())

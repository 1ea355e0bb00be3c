import sys

from examples.taskworker_topologies.app import main

sys.exit(main())

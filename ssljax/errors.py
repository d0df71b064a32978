"""The one exception type users see: a message that names the thing and the fix."""


class UserError(Exception):
  """Bad input (config, files, corpus, checkpoint). The CLI prints it without a traceback."""


class Interrupted(KeyboardInterrupt):
  """Ctrl-C that stopped pretraining after it saved a checkpoint; the message says where."""

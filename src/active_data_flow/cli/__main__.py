"""``python -m active_data_flow.cli``: the ``adf`` command."""

from active_data_flow.cli import main

main(prog_name="adf")

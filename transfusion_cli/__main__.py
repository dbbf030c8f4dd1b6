"""`python -m transfusion_cli` (and `torchrun -m transfusion_cli`) runs the tfx CLI."""

from transfusion_cli.cli import main

if __name__ == "__main__":
    main()

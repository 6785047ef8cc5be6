"""`python -m trainer.pseudo`: pseudo-label rounds (trainer.pseudo.rounds)."""
from core.errors import run_main
from trainer.pseudo.rounds import main

if __name__ == "__main__":
    run_main(main)

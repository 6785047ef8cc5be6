"""`python -m trainer.pretrain`: contrastive pretraining of the backbone (trainer.pretrain.run)."""
from core.errors import run_main
from trainer.pretrain.run import main

if __name__ == "__main__":
    run_main(main)

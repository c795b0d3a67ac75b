"""Test and demo infrastructure: the Synnefo emulator, the stand-in distributions, the SSH
lab and the demo. The product (``api``) never imports this package; the CLI's demo,
emulator, standins and lab commands import it when they run."""

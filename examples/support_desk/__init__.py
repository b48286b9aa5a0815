"""A support desk built on llmgine: the seed README's project structure, for real."""

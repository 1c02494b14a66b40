"""MovieLens data in and out: reading the CSV files (movielens.py), downloading the GroupLens
archives (download.py) and the seeded synthetic generator behind sample_data/ (synth/: its
words in lexicon.py, its random draws in world.py)."""

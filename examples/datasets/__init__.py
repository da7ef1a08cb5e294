"""Data any example may load: scikit-learn's digits, and tfds builders prepared or refused."""

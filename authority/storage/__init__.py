"""Storage: the database engine and transactions, the tables, and the migrations."""

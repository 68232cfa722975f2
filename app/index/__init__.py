"""FAISS only: vector ids, the layered `VectorIndex`, the shard store, its files and
maintenance, and the log follower that keeps it in step with SQL through a `ChangeFeed`.
No ORM and no database driver, even indirectly. May import encoder/ and storage/.
"""

"""Pure reporting logic: how events become counted facts, how facts become the ward's tables,
how a timeline hides what only the owning service may read, and who may read a timeline."""

"""Constants shared by the tests."""

TINY_OVERRIDES = ["trainer.steps=20", "trainer.log_every=10", "trainer.eval_every=20", "trainer.batch_size=16"]

# Examples per split of the small mnist_m/synthetic the tests build.
SMALL_SPLIT = 200

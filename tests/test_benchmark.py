from dann.models import build_adaptation_model, classifier_head, conv_stack
from dann.speed import benchmark, training_flops_per_image


def test_flops_of_the_paper_model_match_a_hand_count():
    model = build_adaptation_model(
        conv_stack(name="feature_extractor"),
        classifier_head([100, 100], num_outputs=10, name="label_classifier"),
        classifier_head([100], num_outputs=1, name="domain_classifier"),
        input_shape=(28, 28, 3),
    )
    conv1 = 2 * (24 * 24 * 32) * (5 * 5 * 3)
    conv2 = 2 * (8 * 8 * 48) * (5 * 5 * 32)
    label_head = 2 * (768 * 100 + 100 * 100 + 100 * 10)
    domain_head = 2 * (768 * 100 + 100 * 1)
    assert training_flops_per_image(model, (28, 28, 3)) == 3 * (conv1 + conv2 + label_head + domain_head)


def test_benchmark_reports_every_figure_and_runs_the_naive_step_in_float32():
    figures = benchmark(["+experiment=moons", "trainer.steps_per_call=5", "trainer.precision=mixed_bfloat16"], steps=10, repeats=2)
    for key in (
        "compiled_images_per_s",
        "pipeline_images_per_s",
        "naive_compiled_images_per_s",
        "eager_images_per_s",
        "flops_per_image",
        "achieved_flops_per_s",
        "matmul_ceiling_flops_per_s",
        "matmul_ceiling_bf16_flops_per_s",
    ):
        assert figures[key] > 0, key
    # dann's step in the precision asked for; the user's naive step in Keras' default float32.
    assert figures["precision"] == "mixed_bfloat16" and figures["naive_compiled_precision"] == "float32"
    # Beside it, the same step in both precisions auto chooses between, in one process.
    by_precision = figures["compiled_images_per_s_by_precision"]
    assert set(by_precision) == {"float32", "mixed_bfloat16"} and figures["compiled_images_per_s"] == by_precision["mixed_bfloat16"]
    low, high = figures["compiled_bfloat16_over_float32_spread"]
    assert 0 < low <= figures["compiled_bfloat16_over_float32"] <= high
    assert figures["precision_choice"]["reason"] == "asked for"
    # The ratio is taken per round, so it lies within the rounds' ratios, not just near the medians' quotient.
    low, high = figures["compiled_over_naive_spread"]
    assert 0 < low <= figures["compiled_over_naive"] <= high
    assert 0.0 <= figures["input_wait_fraction"] <= 1.0
    assert figures["device"]

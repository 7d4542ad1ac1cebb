from replication import bench, report
from replication.results import attack_spec, make_record, provenance, save_records


def test_time_to_accuracy_accumulates_epoch_times():
    hist = [{"epoch_time_s": 10, "test_acc": 0.5}, {"epoch_time_s": 10, "test_acc": 0.86},
            {"epoch_time_s": 10, "test_acc": 0.89}]
    assert bench.time_to_accuracy(hist, (0.85, 0.88, 0.9)) == {0.85: 20, 0.88: 30, 0.9: None}


def test_report_renders_tables_from_records(isolated_store):
    run = provenance()
    recs = [make_record(experiment="01_baseline_training", dataset="cifar10", model="resnet18_cifar10",
                        metric="accuracy", attack=a, eps=e, value=v, n=100, seed=0, profile="smoke",
                        run_id=run["run_id"], model_hash="h", wall_time_s=1.0)
            for a, e, v in [(None, None, 0.9), (attack_spec("fgsm", step_size=0.01), 0.01, 0.5),
                            (attack_spec("pgd", steps=20, step_size=0.00125), 0.01, 0.4)]]
    save_records("01_baseline_training", "smoke", recs, run)
    text = report.render("smoke")
    assert "| clean (eval subset) | 90.00 |" in text and "| pgd-20 @ 0.01 | 40.00 |" in text
    assert "| FGSM | 0.01 | 0.01 | 54.29 | 50.00 | -4.29 | fgsm | 100 |" in text

"""The numbers the original report gives (final epoch), to put beside ours.

Accuracies are fractions. The learning-rate rows for 0.5 and 0.05 are identical in the
report, to the last digit: a copy-paste defect, kept here as printed.
"""
REPORT = {
    ("learning_rate", "lr=0.5"): dict(train_loss=1.7054, train_acc=0.5174, val_loss=2.0027, val_acc=0.4594),
    ("learning_rate", "lr=0.05"): dict(train_loss=1.7054, train_acc=0.5174, val_loss=2.0027, val_acc=0.4594),
    ("learning_rate", "lr=0.01"): dict(train_loss=1.9655, train_acc=0.4590, val_loss=2.2476, val_acc=0.4066),
    ("schedule", "schedule=constant"): dict(train_loss=0.0068, train_acc=0.9980, val_loss=3.6180, val_acc=0.5697),
    ("schedule", "schedule=cosine"): dict(train_loss=0.0013, train_acc=0.9997, val_loss=3.1959, val_acc=0.5825),
    ("weight_decay", "weight_decay=0.0005"): dict(train_loss=0.0024, train_acc=0.9998, val_loss=2.0284, val_acc=0.6079),
    ("weight_decay", "weight_decay=0.0001"): dict(train_loss=0.0013, train_acc=0.9997, val_loss=2.8629, val_acc=0.5775),
    # the mixup study's baseline is the report's best setting without mixup (cosine, wd 5e-4)
    ("mixup", "mixup_alpha=0"): dict(train_loss=0.0024, train_acc=0.9998, val_loss=2.0284, val_acc=0.6079),
    ("mixup", "mixup_alpha=0.2"): dict(train_loss=0.0024, train_acc=0.9998, val_loss=2.0554, val_acc=0.6003),
    ("test", "final"): dict(test_acc=0.6069),
}

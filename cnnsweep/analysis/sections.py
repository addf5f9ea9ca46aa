"""The report's HTML sections, each built from its part of metrics.json (so the page shows nothing
that metrics.json does not hold)."""

from __future__ import annotations

from typing import Any

from cnnsweep.analysis.html import escape, figure, fmt, notes, table

SUMMARY_KEYS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                "recall_weighted", "f1_weighted", "top5_accuracy", "log_loss", "num_errors", "num_images",
                "seconds", "images_per_s")


def summary_section(m: dict[str, Any]) -> str:
    rows = [[x["name"], *[x["summary"].get(k) for k in SUMMARY_KEYS], x["source"]] for x in m["models"]]
    info = table(["", ""], [["target", f"{m['target']['kind']}: {m['target']['path']}"],
                            ["data", f"{m['data']['name']} ({m['data']['root']})"],
                            ["split", f"{m['split']} ({m['data']['num_images']} images)"],
                            ["analysis time (s)", m["seconds"]]])
    return info + notes(m["notes"]) + table(["model", *SUMMARY_KEYS, "source"], rows)


def per_class_section(m: dict[str, Any]) -> str:
    pc = m["per_class"]
    rows = [[r["class_id"], r["name"], r["precision"], r["recall"], r["f1"], r["support"], r["errors"]]
            for r in pc["table"]]
    pairs = [[p["true"], p["true_name"], p["pred"], p["pred_name"], p["count"], p["share_of_true"]]
             for p in pc["confused_pairs"]]
    html = [f"<p>Model: {escape(pc['model'])}. Click a column header to sort.</p>",
            table(["id", "class", "precision", "recall", "f1", "support", "errors"], rows, sortable=True),
            figure(pc["figures"]["confusion_counts"], "Confusion matrix (counts)"),
            figure(pc["figures"]["confusion_normalized"], "Confusion matrix, row-normalized"),
            "<h3>Most-confused class pairs</h3>",
            table(["true id", "true class", "pred id", "pred class", "images", "share of true class"], pairs)]
    html.append("<h3>Misclassified images of the worst classes (lowest recall)</h3>")
    html += [figure(g["figure"], f"class {g['class_id']} {g['name']}: most confident mistakes")
             for g in pc["galleries"]]
    return "".join(html)


def data_section(d: dict[str, Any]) -> str:
    b, s = d["balance"], d["image_stats"]
    text = (f"<p>Training split, {d['num_images']} images. Imbalance ratio (largest / smallest class): "
            f"{fmt(b['imbalance_ratio_before'])} as loaded, {fmt(b['imbalance_ratio_after'])} after "
            f"<code>data.balance: {escape(b['method'])}</code> (one epoch; for class_weights: count x loss weight). "
            f"Mean brightness {fmt(s['brightness_mean'])}, mean contrast {fmt(s['contrast_mean'])} "
            "(0-255 luma units).</p>")
    return (text + figure(b["figure"], "Training images per class, before and after balancing")
            + figure(s["figure"], "Brightness and contrast per image, by class")
            + "".join(figure(f, f) for f in d["samples"]["figures"]))


def _value_rows(f: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for v in f["values"]:
        ch = v.get("classes") or {}
        better = ", ".join(f"{c['class_id']} ({c['delta_recall']:+.3f})" for c in ch.get("better", []))
        worse = ", ".join(f"{c['class_id']} ({c['delta_recall']:+.3f})" for c in ch.get("worse", []))
        rows.append([v["value"] + (" (reference)" if v["reference"] else ""), v["num_trials"], v["accuracy_mean"],
                     v["accuracy_std"], v["accuracy_best"], v.get("delta_accuracy_vs_reference"),
                     ch.get("num_better"), better, ch.get("num_worse"), worse])
    return rows


def ablation_section(a: dict[str, Any]) -> str:
    html = [f"<p>{a['num_trials']} trials predicted on the analyzed split. Per factor and value: accuracy "
            "over its trials, the change against the reference value, and the classes whose recall changed "
            "most (class id and change in recall).</p>"]
    for f in a["factors"]:
        html.append(f"<h3>{escape(f['factor'])}</h3>")
        html.append(table(["value", "trials", "acc mean", "acc std", "acc best", "delta acc", "# classes better",
                           "most better", "# classes worse", "most worse"], _value_rows(f)))
        html.append(figure(f["figure"], f"train/val curves per value of {f['factor']} (mean +- std over trials)"))
    return "".join(html)


def atlas_section(a: dict[str, Any]) -> str:
    rows = [[n, a["accuracy_per_model"][n], a["errors_per_model"][n], a["unique_per_model"][n]] for n in a["models"]]
    text = (f"<p>{a['num_images']} images. Wrong for every model: {a['shared_by_all']}; wrong for at least one: "
            f"{a['wrong_by_any']}. Ensemble (mean of softmax) accuracy: <b>{fmt(a['ensemble_accuracy'])}</b> "
            f"(best single model: {fmt(max(a['accuracy_per_model'].values()))}); oracle (any model right): "
            f"{fmt(a['oracle_accuracy'])}.</p>")
    return text + table(["model", "accuracy", "errors", "unique errors"], rows) + figure(a["figure"], "")


def _recognition_text(rec: dict[str, Any] | None) -> str:
    if not rec:
        return ""
    each = ", ".join(f"{escape(j['model'])}: {fmt(j['recognized'])}" for j in rec["judges"])
    return (f"<p>Class images read as their class (top-1) by the other, independently trained models: "
            f"<b>{fmt(rec['rate'])}</b> ({each}; chance {fmt(rec['chance'])}).</p>")


def explain_section(e: dict[str, Any]) -> str:
    figures = "".join(figure(f["path"], f"{f['title']}: {f['caption']}") for f in e["figures"])
    return figures + _recognition_text(e.get("class_images", {}).get("recognition"))


def model_card_section(e: dict[str, Any]) -> str:
    c = e["model_card"]
    mem = c["memory_bytes"]
    rows = [["parameters (total / trainable)", f"{c['params']['total']:,} / {c['params']['trainable']:,}"],
            ["FLOPs, one prediction", f"{c['flops']['predict_one']:,}"],
            [f"FLOPs, training step of {c['batch_size']}", f"{c['flops']['train_batch']:,}"]]
    rows += [[f"memory, one prediction: {k}", f"{v:,} B"] for k, v in mem["predict_one"].items()]
    rows += [[f"memory, training a batch of {c['batch_size']} ({c['optimizer']}): {k}", f"{v:,} B"]
             for k, v in mem["train_batch"].items()]
    return table(["", ""], rows) + f"<p>{escape(c['note'])}</p>"

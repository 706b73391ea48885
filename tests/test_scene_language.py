"""Language from scene graphs: unique referring expressions, paraphrases, temporal queries that need order,
questions balanced per family (a question-only majority stays at chance), entailment templates under every
label."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from xmodal.data.synth import scene_language as lang
from xmodal.data.synth import scene_questions as qa
from xmodal.data.synth import scenes

CROWDED = scenes.SceneConfig(min_objects=3, max_objects=6, repeat_class=0.6, height=96, width=96,
                             classes=("dog", "cat", "violin", "bell", "duck"))


def test_every_referring_expression_matches_exactly_its_object():
    kinds = Counter()
    rng = np.random.default_rng(0)
    for i in range(60):
        scene = scenes.generate_scene(2, i, "train", CROWDED)
        for t in (0.0, 4.5):
            for ref in lang.referring_expressions(scene, t, rng):
                assert lang.resolve_expression(ref["expression"], scene, t) == [ref["object"]], ref
                kinds[ref["kind"]] += 1
    assert {"class", "attribute", "relation", "ordinal", "negation"} <= set(kinds), kinds


def test_referring_expressions_are_minimal():
    rng = np.random.default_rng(1)
    for i in range(30):
        scene = scenes.generate_scene(4, i, "train", CROWDED)
        seen = lang.seen_objects(scene, 0.0)
        for ref in lang.referring_expressions(scene, 0.0, rng):
            target = next(o for o in seen if o["id"] == ref["object"])
            alone = sum(o["cls"] == target["cls"] for o in seen) == 1
            assert (ref["kind"] == "class") == alone, ref  # a bare class name whenever it suffices


def test_resolver_rejects_what_the_scene_does_not_hold():
    scene = scenes.generate_scene(2, 0, "train", CROWDED)
    assert lang.resolve_expression("the unicorn", scene, 0.0) == []


def test_captions_are_at_least_five_distinct_paraphrases():
    rng = np.random.default_rng(2)
    for i in range(10):
        caps = lang.captions(scenes.generate_scene(1, i, "train"), rng)
        assert len(caps) >= 5 and len(set(caps)) == len(caps)


def test_temporal_queries_need_order_and_point_at_real_spans():
    rng = np.random.default_rng(3)
    kinds = Counter()
    for i in range(40):
        scene = scenes.generate_scene(6, i, "train", CROWDED)
        acts = scenes.actions(scene)
        for q in lang.temporal_queries(scene, acts, rng):
            kinds[q["kind"]] += 1
            assert 0 <= q["start"] < q["end"] <= scene.config.duration
            obj = scene.objects[q["object"]]
            if q["action"] == "sound":
                assert [q["start"], q["end"]] in obj.sounding
            if q["kind"] == "single":  # the described object does this only once
                same = [a for a in acts + [{"object": o.id, "action": "visible"} for o in scene.objects
                                           for _ in o.visible]
                        if a["object"] == q["object"] and a["action"] == q["action"]]
                assert len(same) == 1, q
            if q["kind"] == "after":  # the anchoring event happens once, and the moment is the first span after it
                anchor = q["query"].rstrip(".").split(" after the ", 1)[1]
                assert anchor
                starts = [a["start"] for a in acts if a["object"] == q["object"] and a["action"] == q["action"]]
                starts += [s for s, _ in obj.visible] if q["action"] == "visible" else []
                earlier = [s for s in starts if s < q["start"]]
                # some event of another object, done once, falls between the previous span and this one
                events = Counter((a["object"], a["action"]) for a in acts if a["start"] == a["end"])
                assert any(a["object"] != q["object"] and events[(a["object"], a["action"])] == 1
                           and max(earlier) < a["start"] <= q["start"] for a in acts if a["start"] == a["end"])
    assert kinds["ordinal"] and kinds["after"] and kinds["single"]


def _build_questions(split: str, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        scene = scenes.generate_scene(seed, i, split, CROWDED)
        loud = {o.id: float(rng.uniform(-20, 0)) for o in scene.objects}  # stand-in levels: any will do here
        items += qa.avqa_questions(scene, rng, loud)
    return qa.balance(items, lambda q: tuple(q["type"]), qa.answer_key, rng, rescue=True)


def test_question_only_majority_stays_at_chance_per_family():
    train, test = _build_questions("train", 250, 0), _build_questions("test", 250, 1)
    families = defaultdict(list)
    for q in test:
        families[tuple(q["type"])].append(q)
    assert len(families) >= 8, sorted(families)
    majority_by_question: dict[str, Counter] = defaultdict(Counter)
    for q in train:
        majority_by_question[qa.fill(q)][q["anser"]] += 1
    family_majority = {f: Counter(q["anser"] for q in train if tuple(q["type"]) == f).most_common(1)[0][0]
                       for f in families}
    for fam, qs in families.items():
        answers = Counter(q["anser"] for q in qs)
        chance = 1 / len({q["anser"] for q in train if tuple(q["type"]) == fam})
        blind = np.mean([q["anser"] == family_majority[fam] for q in qs])
        assert blind <= chance + 0.08, (fam, blind, chance, answers)
        # the same with the filled question text seen in training (an answer prior per question); a temporal
        # question names its two candidates, so its chance is one half
        guess = [majority_by_question[qa.fill(q)].most_common(1)[0][0] if qa.fill(q) in majority_by_question
                 else family_majority[fam] for q in qs]
        blind_text = np.mean([g == q["anser"] for g, q in zip(guess, qs)])
        chance_text = 0.5 if fam == ("Audio-Visual", "Temporal") else chance
        slack = max(0.08, 3 * np.sqrt(chance_text * (1 - chance_text) / len(qs)))
        assert blind_text <= chance_text + slack, (fam, blind_text, chance_text, len(qs))


def test_every_entailment_template_appears_under_all_three_labels():
    from dataclasses import replace

    rng = np.random.default_rng(5)
    cfg = replace(CROWDED, occluder=0.5)
    seen = defaultdict(set)
    for i in range(40):
        scene = scenes.generate_scene(7, i, "train", cfg)
        for h in qa.entailment_hypotheses(scene, 5.0, rng):
            seen[h["template"]].add(h["label"])
            if scene.occluders == [] and h["label"] == "neutral":  # only a covered object can make it so
                assert any(0 < f < lang.SEEN for f in lang.visible_fractions_at(scene, 5.0).values())
    assert all(seen[t] == {"entailment", "neutral", "contradiction"} for t in qa.TEMPLATES), dict(seen)


def test_action_queries_single_out_one_of_several_same_class_objects():
    from xmodal.data.synth.scene_benchmarks_vl import STVG_CONFIG

    rng = np.random.default_rng(9)
    n = 0
    for i in range(30):
        scene = scenes.generate_scene(3, i, "train", STVG_CONFIG)
        acts = scenes.actions(scene)
        for q in lang.action_queries(scene, acts, rng):
            cls = scene.objects[q["object"]].cls
            same_class = [o.id for o in scene.objects if o.cls == cls]
            assert len(same_class) >= 2  # the class alone does not tell the referent
            spans = sorted((a["start"], a["object"]) for a in acts
                           if a["action"] == q["action"] and a["object"] in same_class)
            k = 0 if "for the " not in q["query"] else lang.ORDINALS.index(q["query"].split("for the ")[1].split()[0])
            assert spans[k] == (q["start"], q["object"]), q
            n += 1
    assert n > 20

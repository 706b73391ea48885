"""Language from the scene graph: captions, referring expressions and temporal queries.

Everything is derived from :mod:`xmodal.data.synth.scenes` graphs with a seeded ``numpy`` generator:

- :func:`captions`: at least five paraphrases of what is seen and heard (order and synonyms vary);
- :func:`referring_expressions`: for each object seen in a frame, one expression that picks it out uniquely
  with the fewest modifiers (colour, size, a "left of" relation, an ordinal from the left or right, or a
  negation); :func:`resolve_expression` parses such an expression independently and returns the objects it
  matches, which is how the tests prove uniqueness;
- :func:`temporal_queries`: sentences whose moment is an action span; repeated actions are told apart by order
  ("for the second time") or by an earlier event ("after the cat appears").

An object is *seen* in a frame when at least half of its sprite's pixels are uncovered.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import numpy as np

from xmodal.data.synth import vocabulary
from xmodal.data.synth.scene_render import visible_fractions_at
from xmodal.data.synth.scenes import SEEN, Scene, SceneObject, box_at, state_at

ORDINALS = ("first", "second", "third", "fourth", "fifth")
_SYNONYM = {s: c.name for c in vocabulary.CLASSES for s in c.synonyms}


def _syn(cls: str, rng: np.random.Generator) -> str:
    return str(rng.choice(vocabulary.get_class(cls).synonyms))


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def _add_sentence(out: list[str], text: str, wanted: int) -> bool:
    """Append ``text`` as a sentence unless ``out`` already holds it; True once ``out`` has ``wanted``."""
    sentence = _sentence(text)
    if sentence not in out:
        out.append(sentence)
    return len(out) >= wanted


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def seen_objects(scene: Scene, t: float) -> list[dict[str, Any]]:
    """The objects seen at time ``t``: id, class, tint and size at ``t``, box and horizontal centre."""
    frac = visible_fractions_at(scene, t)
    out = []
    for o in scene.objects:
        if frac[o.id] >= SEEN:
            box, state = box_at(o, t, scene.config), state_at(o, t, scene.config)
            assert box is not None and state is not None  # a seen object is visible
            out.append({"id": o.id, "cls": o.cls, "tint": state[3], "size": o.size, "box": box,
                        "cx": (box[0] + box[2]) / 2})
    return out


# ---------------------------------------------------------------- captions

def _noun(o: SceneObject, rng: np.random.Generator, always_tint: bool = False) -> str:
    name = _syn(o.cls, rng)
    return name if o.tint == "plain" or (not always_tint and rng.random() < 0.3) else f"{o.tint} {name}"


def captions(scene: Scene, rng: np.random.Generator, n: int = 5, always_tint: bool = False) -> list[str]:
    """``n`` (at least five) distinct paraphrases describing the scene's seen objects and its sounds;
    ``always_tint`` names every tinted object's colour (so captions of scenes differing in one colour differ)."""
    seen = [o for o in scene.objects if o.visible]
    heard = [o for o in scene.objects if o.sounding]
    out: list[str] = []
    for _ in range(40 * n):
        order_seen = [seen[i] for i in rng.permutation(len(seen))]
        order_heard = [heard[i] for i in rng.permutation(len(heard))]
        s_phr = _join([_article(_noun(o, rng, always_tint)) for o in order_seen]) if seen else "nothing"
        is_are = "is" if len(seen) <= 1 else "are"
        h_items = [(f"the {_noun(o, rng, always_tint)} {vocabulary.get_class(o.cls).verb}" if o.visible else
                    f"{_article(_syn(o.cls, rng))} {vocabulary.get_class(o.cls).verb} off screen")
                   for o in order_heard]
        h_phr = _join(h_items) if heard else "no sound"
        bg = scene.background.get("texture", scene.background["kind"])
        template = int(rng.integers(0, 6))
        text = [f"{s_phr} {is_are} on screen while {h_phr} can be heard",
                f"you can see {s_phr} and hear {h_phr}",
                f"a video of {s_phr}, with {h_phr}",
                f"{h_phr} can be heard as {s_phr} {is_are} shown",
                f"on a {bg} background there {is_are} {s_phr}; {h_phr} can be heard",
                f"{s_phr} {is_are} visible, and the soundtrack has {h_phr}"][template]
        if _add_sentence(out, text, max(n, 5)):
            break
    return out


def image_captions(scene: Scene, t: float, rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` (at least five) distinct captions of the frame at ``t``: every seen object with its colour, and a
    left/right relation between two seen objects of different classes when there is one."""
    seen = seen_objects(scene, t)
    pairs = [(a, b) for a in seen for b in seen if a["cls"] != b["cls"] and a["box"][2] <= b["box"][0]]
    out: list[str] = []
    for _ in range(40 * n):
        names = [_article(("" if o["tint"] == "plain" else o["tint"] + " ") + _syn(o["cls"], rng))
                 for o in (seen[i] for i in rng.permutation(len(seen)))]
        objs = _join(names) if names else "an empty scene"
        is_are = "is" if len(names) <= 1 else "are"
        rel = ""
        if pairs:
            a, b = pairs[int(rng.integers(0, len(pairs)))]
            an, bn = _syn(a["cls"], rng), _syn(b["cls"], rng)
            rel = f"the {an} is to the left of the {bn}" if rng.random() < 0.5 else \
                f"the {bn} is to the right of the {an}"
        bg = scene.background.get("texture", scene.background["kind"])
        options = [f"{objs} on a {bg} background", f"a picture of {objs}", f"there {is_are} {objs} in the image",
                   f"an image showing {objs}", f"{objs} {is_are} shown"]
        text = options[int(rng.integers(0, len(options)))] + (f"; {rel}" if rel and rng.random() < 0.7 else "")
        if _add_sentence(out, text, max(n, 5)):
            break
    return out


def _present(verb: str) -> str:
    return verb[:-3] + "s"  # "barking" -> "barks", "playing" -> "plays"


def audio_captions(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` (at least five) distinct captions of the soundtrack alone, naming the sources in the order they
    first sound (what an audio captioning annotator hears)."""
    heard = sorted((o for o in scene.objects if o.sounding), key=lambda o: (o.sounding[0][0], o.id))
    out: list[str] = []
    for _ in range(40 * n):
        names = [_article(_syn(o.cls, rng)) for o in heard]
        verbs = [vocabulary.get_class(o.cls).verb for o in heard]
        if not heard:
            options = ["only faint background noise can be heard", "a quiet recording with low noise",
                       "near silence with a soft hiss", "nothing but a low rumble", "a silent scene with faint noise"]
        elif len(heard) == 1:
            a, v = names[0], verbs[0]
            options = [f"{a} {_present(v)}", f"the sound of {a} {v}", f"{a} {v} over faint noise",
                       f"someone records {a} {v}", f"{a} can be heard {v}"]
        else:
            parts = [f"{a} {_present(v)}" for a, v in zip(names, verbs)]
            ing = [f"{a} {v}" for a, v in zip(names, verbs)]
            options = [", then ".join(parts), f"first {parts[0]}, and later " + _join(parts[1:]),
                       f"the sound of {ing[0]} followed by " + _join(ing[1:]),
                       f"{parts[1]} after {parts[0]}" + ("" if len(parts) == 2 else ", then " + _join(parts[2:])),
                       f"you can hear {ing[0]}, later " + _join(ing[1:])]
        text = options[int(rng.integers(0, len(options)))]
        if _add_sentence(out, text, max(n, 5)):
            break
    return out


# ---------------------------------------------------------------- referring expressions

def _matches(obj: dict, cls: str, tint: str | None, size: str | None) -> bool:
    return obj["cls"] == cls and (tint is None or obj["tint"] == tint) and (size is None or obj["size"] == size)


def _head(cls: str, tint: str | None, size: str | None, rng: np.random.Generator) -> str:
    words = [w for w in (size, tint) if w is not None] + [_syn(cls, rng)]  # "the small red dog"
    return " ".join(words)


def _candidates(target: dict, seen: list[dict], rng: np.random.Generator):
    """(modifier count, kind, expression) for every unique description of ``target`` we know how to say."""
    cls = target["cls"]
    out = []
    for tint, size in ((None, None), (target["tint"], None), (None, target["size"]),
                       (target["tint"], target["size"])):
        if tint == "plain":
            continue
        if sum(_matches(o, cls, tint, size) for o in seen) == 1:
            kind = "class" if tint is None and size is None else "attribute"
            out.append(((tint is not None) + (size is not None), kind, "the " + _head(cls, tint, size, rng)))
    for anchor in seen:  # a relation to an anchor named by its class alone
        if anchor["id"] == target["id"] or anchor["cls"] == cls or sum(o["cls"] == anchor["cls"] for o in seen) > 1:
            continue
        for side, test in (("left", lambda o, a=anchor: o["box"][2] <= a["box"][0]),
                           ("right", lambda o, a=anchor: o["box"][0] >= a["box"][2])):
            if test(target) and sum(o["cls"] == cls and test(o) for o in seen) == 1:
                out.append((1, "relation", f"the {_syn(cls, rng)} to the {side} of the {_syn(anchor['cls'], rng)}"))
    same = sorted((o for o in seen if o["cls"] == cls), key=lambda o: o["cx"])
    centres = [o["cx"] for o in same]
    if len(same) > 1 and min(np.diff(centres)) >= 3:
        k = [o["id"] for o in same].index(target["id"])
        side = str(rng.choice(["left", "right"]))
        k = k if side == "left" else len(same) - 1 - k
        out.append((1, "ordinal", f"the {ORDINALS[k]} {_syn(cls, rng)} from the {side}"))
    others = [o for o in same if o["id"] != target["id"]]
    if others and len({o["tint"] for o in others}) == 1 and others[0]["tint"] != target["tint"]:
        out.append((1, "negation", f"the {_syn(cls, rng)} that is not {others[0]['tint']}"))
    return out


def referring_expressions(scene: Scene, t: float, rng: np.random.Generator) -> list[dict[str, Any]]:
    """For each object seen at ``t`` (props included), one unique expression with the fewest modifiers; among
    equally short ones the kind (attribute, relation, ordinal, negation) is drawn at random. Objects with no
    unique expression of this grammar get none. Returns ``{"object", "expression", "kind", "box"}``."""
    seen = seen_objects(scene, t)
    out = []
    for target in seen:
        cands = _candidates(target, seen, rng)
        if not cands:
            continue
        fewest = min(c[0] for c in cands)
        best = [c for c in cands if c[0] == fewest]
        _, kind, text = best[int(rng.integers(0, len(best)))]
        out.append({"object": target["id"], "expression": text, "kind": kind, "box": target["box"]})
    return out


def resolve_expression(expression: str, scene: Scene, t: float) -> list[int]:
    """The ids of the objects seen at ``t`` that ``expression`` (of :func:`referring_expressions`' grammar)
    describes. Parsed from the words, independently of how the expression was made."""
    seen = seen_objects(scene, t)
    words = expression.removeprefix("the ").strip()
    negated = ordinal = relation = None
    if " that is not " in words:
        words, negated = words.split(" that is not ")
    elif words.endswith((" from the left", " from the right")):
        words, side = words.rsplit(" from the ", 1)
        first, words = words.split(" ", 1)
        ordinal = (ORDINALS.index(first), side)
    for side in ("left", "right"):
        if f" to the {side} of the " in words:
            words, anchor = words.split(f" to the {side} of the ")
            relation = (side, _SYNONYM.get(anchor))
    toks = words.split(" ")
    size = toks.pop(0) if toks[0] in vocabulary.SIZES else None
    tint = toks.pop(0) if toks and toks[0] in vocabulary.TINTS else None
    cls = _SYNONYM.get(" ".join(toks))
    if cls is None:
        return []
    hits = [o for o in seen if _matches(o, cls, tint, size)]
    if negated:
        hits = [o for o in hits if o["tint"] != negated]
    if relation:
        side, anchor_cls = relation
        anchors = [o for o in seen if o["cls"] == anchor_cls]
        if len(anchors) != 1:
            return []
        a = anchors[0]["box"]
        hits = [o for o in hits if (o["box"][2] <= a[0] if side == "left" else o["box"][0] >= a[2])]
    if ordinal:
        k, side = ordinal
        ordered = sorted(hits, key=lambda o: o["cx"], reverse=side == "right")
        hits = [ordered[k]] if k < len(ordered) else []
    return [o["id"] for o in hits]


# ---------------------------------------------------------------- temporal queries

def clip_descriptions(scene: Scene, rng: np.random.Generator) -> dict[int, str]:
    """A unique description of each object over the whole clip (class, then initial colour and size)."""
    out = {}
    for o in scene.objects:
        for tint, size in ((None, None), (o.tint, None), (None, o.size), (o.tint, o.size)):
            if tint == "plain":
                continue
            same = [p for p in scene.objects if p.cls == o.cls and (tint is None or p.tint == tint)
                    and (size is None or p.size == size)]
            if len(same) == 1:
                out[o.id] = _head(o.cls, tint, size, rng)
                break
    return out


_SPAN_PHRASE = {"sound": "{verb}", "move left": "moves to the left", "move right": "moves to the right",
                "grow": "grows bigger", "visible": "is on screen"}
_INSTANT_PHRASE = {"appear": "appears", "disappear": "disappears", "start sounding": "starts {verb}",
                   "stop sounding": "stops {verb}", "change colour": "changes colour"}


def temporal_queries(scene: Scene, actions: list[dict[str, Any]], rng: np.random.Generator) -> list[dict]:
    """Sentences with their moment ``[start, end]`` (seconds), one per action span that the sentence singles
    out: ``{"query", "start", "end", "object", "action", "kind"}`` with kind "single", "ordinal" or "after"."""
    desc = clip_descriptions(scene, rng)
    by_id = {o.id: o for o in scene.objects}
    spans = [a for a in actions if a["action"] in _SPAN_PHRASE and a["end"] > a["start"]]
    spans += [{"object": o.id, "action": "visible", "start": s, "end": e} for o in scene.objects
              for s, e in o.visible if o.kind != "prop" and e - s < scene.config.duration]
    instants = [a for a in actions if a["action"] in _INSTANT_PHRASE]
    # an event can anchor "after" only if its object does it once ("after the cat appears" must be one time)
    once = {k for k, n in Counter((a["object"], a["action"]) for a in instants).items() if n == 1}
    instants = [a for a in instants if (a["object"], a["action"]) in once]
    out = []

    def key(a: dict) -> tuple:
        return (a["object"], a["action"])

    for (oid, act), group in itertools.groupby(sorted(spans, key=lambda a: (key(a), a["start"])), key=key):
        members = list(group)
        if oid not in desc:
            continue
        verb = vocabulary.get_class(by_id[oid].cls).verb
        phrase = f"the {desc[oid]} " + (("is " + verb) if act == "sound" else _SPAN_PHRASE[act])
        for k, span in enumerate(members):
            if len(members) == 1:
                out.append({"query": phrase, "kind": "single", **span})
                continue
            out.append({"query": f"{phrase} for the {ORDINALS[min(k, 4)]} time", "kind": "ordinal", **span})
            for ev in instants:  # "after": the first span starting at or after another object's event
                if ev["object"] == oid or ev["object"] not in desc:
                    continue
                first_after = [g for g in members if g["start"] >= ev["start"]]
                if first_after and first_after[0] is span and k > 0 and members[k - 1]["start"] < ev["start"]:
                    ev_verb = vocabulary.get_class(by_id[ev["object"]].cls).verb
                    ev_phrase = _INSTANT_PHRASE[ev["action"]].format(verb=ev_verb)
                    out.append({"query": f"{phrase} after the {desc[ev['object']]} {ev_phrase}", "kind": "after",
                                **span})
                    break
    for q in out:
        q["query"] = _sentence(q["query"])
    return out


def action_queries(scene: Scene, actions: list[dict[str, Any]], rng: np.random.Generator) -> list[dict]:
    """Sentences that name an object by its class and an action alone ("the dog that moves to the left"), for
    classes with several objects in the clip: only the action, within its span, tells the referent apart. A
    span is used when it is the only span of that action among the class's objects, or is told apart by order
    ("... for the second time"). Same fields as :func:`temporal_queries`, kind "action" or "action ordinal"."""
    by_id = {o.id: o for o in scene.objects}
    counts = Counter(o.cls for o in scene.objects)
    spans = [a for a in actions if a["action"] in ("sound", "move left", "move right", "grow") and a["end"] > a["start"]
             and counts[by_id[a["object"]].cls] >= 2]
    out = []

    def key(a: dict) -> tuple:
        return (by_id[a["object"]].cls, a["action"])

    for (cls, act), group in itertools.groupby(sorted(spans, key=lambda a: (key(a), a["start"])), key=key):
        members = list(group)
        if len({g["start"] for g in members}) < len(members):
            continue  # two objects of the class start the action together: order cannot tell them apart
        verb = vocabulary.get_class(cls).verb
        phrase = ("is " + verb) if act == "sound" else _SPAN_PHRASE[act]
        for k, span in enumerate(members[: len(ORDINALS)]):
            text = f"the {_syn(cls, rng)} that {phrase}"
            if len(members) > 1:
                text += f" for the {ORDINALS[min(k, 4)]} time"
            out.append({"query": _sentence(text), "kind": "action" if len(members) == 1 else
                        "action ordinal", **span})
    return out

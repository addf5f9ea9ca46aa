"""freeze_startup_heap: start-up garbage is collected, what is alive leaves the collector's lists.

Each case runs in a child process: freezing pytest's own heap would outlive the test."""

import json
import subprocess
import sys
import textwrap

from cnnsweep.serving.settings import build_settings

CHILD = textwrap.dedent("""
    import gc, json, weakref
    from cnnsweep.serving.heap import freeze_startup_heap

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a
        return a

    kept = cycle()                       # alive at start-up: frozen
    dropped = weakref.ref(cycle())       # start-up garbage (a cycle only the collector frees)
    gc.disable()                         # no automatic collection before the freeze
    frozen = freeze_startup_heap()
    later = cycle()                      # a request's objects: still the collector's
    ids = {id(o) for o in gc.get_objects()}
    print(json.dumps({"frozen": frozen, "dropped_freed": dropped() is None,
                      "kept_tracked": id(kept) in ids, "later_tracked": id(later) in ids}))
""")


def test_freeze_collects_garbage_then_hides_live_objects_from_the_collector():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    assert r["frozen"] > 1000  # the interpreter's and cnnsweep's start-up objects
    assert r["dropped_freed"], "garbage alive before the freeze must be collected, not frozen"
    assert not r["kept_tracked"], "a start-up object is still walked by every full collection"
    assert r["later_tracked"], "objects made after the freeze must stay collectable"


def test_replicas_freeze_by_default_and_it_can_be_turned_off():
    assert build_settings({"models": ["m.onnx"]}).gc_freeze is True
    assert build_settings({"models": ["m.onnx"], "gc_freeze": False}).gc_freeze is False

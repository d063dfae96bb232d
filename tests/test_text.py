from seqrec.text import counted


def test_counted_agrees_in_number():
    assert counted(1, "run") == "1 run"
    assert counted(0, "run") == "0 runs"
    assert counted(3, "finished run") == "3 finished runs"
    assert counted(2, "child", "children") == "2 children"

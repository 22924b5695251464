"""host_memory.step_block_advice: when a step's one block of temporaries will be page-faulted in
again every step, and what to do about it."""

from s2s_jax.training import host_memory

MB = 2**20


def test_a_block_a_thread_heap_holds_needs_no_advice(monkeypatch):
    monkeypatch.setattr(host_memory, "_applied", "keep")
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert host_memory.step_block_advice(64 * MB) is None


def test_a_bigger_block_under_keep_gets_the_fix_named(monkeypatch):
    monkeypatch.setattr(host_memory, "_applied", "keep")
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    advice = host_memory.step_block_advice(114 * MB)
    assert "one 114 MB block" in advice and "--malloc_tuning=keep_one_arena" in advice
    assert "GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in advice


def test_one_arena_off_and_huge_pages_need_no_advice(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    for mode in ("keep_one_arena", "off"):
        monkeypatch.setattr(host_memory, "_applied", mode)
        assert host_memory.step_block_advice(500 * MB) is None
    monkeypatch.setattr(host_memory, "_applied", "keep")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    assert host_memory.step_block_advice(500 * MB) is None


def test_the_applied_mode_is_remembered(monkeypatch):
    monkeypatch.setattr(host_memory, "_applied", None)
    assert host_memory.keep_freed_memory("off")  # changes nothing in glibc
    assert host_memory._applied == "off"  # pylint: disable=protected-access

"""The CPU-scale study of the paper's findings (official_runs/cpu_study): the runs (`plan`), training them
and keeping their records (`runner`), and the figures (`figures`).

    python -m rethink_tf.cpu_study --work_dir=runs/cpu_study --out_dir=official_runs/cpu_study

trains every run not yet recorded under --out_dir (in order; a killed study resumes), then redraws the
figures and their tables from the records.
"""

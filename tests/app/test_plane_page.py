"""The "Flows in the plane" page in AppTest: train, the pictures, a link's settings, lesson mode, bad CSV."""


from odenet.app import cache
from tests.support.apptest import figures, open_link, page, train_plane_page


def test_default_page_shows_points_then_trains_and_shows_every_picture(runs):
    at = page("plane")
    assert [f["layout"]["title"]["text"] for f in figures(at)] == ["moons: the training points"]
    assert at.button(key="pl_stop").disabled and not at.button(key="pl_train").disabled
    job = train_plane_page(at, "pl", "plane_job")
    run = job.snapshot().run
    assert run.test_accuracy >= 0.97
    assert "Trained in" in at.success[0].value and "rk4 x4" in at.success[0].value
    titles = [str(f["layout"].get("title", {}).get("text", "")) for f in figures(at)]
    assert "Training" in titles and "Decision regions in the input plane (test points)" in titles
    flow = next(f for f in figures(at) if f["layout"]["title"]["text"].startswith("The flow"))
    assert len(flow["frames"]) == 5  # t0 and the four rk4 steps: played in the browser, no rerun per frame
    assert [s["label"] for s in flow["layout"]["sliders"][0]["steps"]] == ["t=0", "t=0.25", "t=0.5", "t=0.75", "t=1"]
    sweep = at.dataframe[0].value
    assert "rk4 x4" in list(sweep["solver"]) and sweep["test accuracy (%)"].max() >= 97
    assert not any(t.startswith("Trajectories with the augmented") for t in titles)  # augment 0: no 3-D view


def test_link_settings_lesson_mode_and_the_3d_lift(runs):
    at = open_link("plane", dataset="circles", augment="1", steps="2", lesson="1")
    assert at.session_state["pl_data"] == "circles" and at.session_state["pl_aug"] == 1
    assert at.session_state["pl_steps"] == 2
    assert any("odenet_locked" in str(h.proto) for h in at.get("html"))  # the controls are hidden
    train_plane_page(at, "pl", "plane_job")
    titles = [f["layout"]["title"]["text"] for f in figures(at) if "title" in f["layout"]]
    assert "Trajectories with the augmented dimension (vertical axis)" in titles
    assert "augment 1" in at.success[0].value and "rk4 x2" in at.success[0].value


def test_bad_csv_is_one_message_and_good_csv_trains(runs):
    at = open_link("plane", dataset="your CSV")
    assert "Upload or paste a CSV" in at.info[0].value
    at.text_area(key="pl_paste").input("x,y,label\n0,0,0\n1,1,0\n").run()
    assert [e.value for e in at.error] == ["the uploaded file: every point has label 0; a classifier needs at least "
                                           "two classes"]
    rows = "\n".join(f"{i / 10},{(i % 7) / 10},{i % 2}" for i in range(40))
    at.text_area(key="pl_paste").input("x,y,label\n" + rows).run()
    assert not at.error
    assert "28 training and 12 test points, 2 classes" in at.caption[0].value


def test_augment_lesson_trains_both_once_for_everyone(runs, monkeypatch):
    cache.clear("plane_lesson")
    at = open_link("plane", dataset="circles")
    at.button(key="pl_lesson_run").click().run()
    assert not at.exception
    labels = [f["layout"]["title"]["text"] for f in figures(at) if f["layout"]["title"]["text"].startswith("augment")]
    assert len(labels) == 2 and labels[0].startswith("augment 0: ") and labels[1].startswith("augment 1: ")
    acc = [float(t.split(": ")[1].split("%")[0]) for t in labels]
    assert acc[1] >= 98.0 and acc[1] > acc[0]
    again = open_link("plane", dataset="circles")  # another visitor: the pair is already there
    assert not [b for b in again.button if b.key == "pl_lesson_run"]

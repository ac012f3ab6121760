"""Attack types from the public datasets' naming (data/attacks.py), as `prepare` and the SSDG folders use them."""
import pytest

from anrl_ext.data.attacks import ATTACKS


@pytest.mark.parametrize("dataset, rel, kind", [
    # OULU-NPU: Phone_Session_User_File, File 1 live, 2-3 print, 4-5 replay
    ("oulu", "Train_files/1_1_01_1.avi", None),
    ("oulu", "Train_files/1_1_01_2.avi", "print"),
    ("oulu", "Dev_files/6_3_21_3.avi", "print"),
    ("oulu", "Test_files/2_2_36_4.avi", "replay"),
    ("oulu", "Test_files/4_1_55_5", "replay"),  # a frame folder, as SSDG's crops
    ("oulu", "Train_files/1_1_01_6.avi", None),
    # CASIA-FASD: 1, 2, HR_1 live; 3, 4, HR_2 warped photo; 5, 6, HR_3 cut photo; 7, 8, HR_4 video
    ("casia", "train_release/1/3.avi", "warped_print"),
    ("casia", "test_release/12/HR_2.avi", "warped_print"),
    ("casia", "test_release/12/HR_3.avi", "cut_print"),
    ("casia", "train_release/5/6.avi", "cut_print"),
    ("casia", "train_release/5/8.avi", "replay"),
    ("casia", "train_release/5/HR_4", "replay"),
    ("casia", "train_release/5/HR_1.avi", None),
    ("casia", "train_release/5/2.avi", None),
    # Idiap Replay-Attack: the attack device in the name
    ("replay", "train/attack/hand/attack_print_client001_session01_highdef_photo_adverse.mov", "print"),
    ("replay", "devel/attack/fixed/attack_highdef_client030_session01_highdef_photo_adverse.mov", "highdef_replay"),
    ("replay", "test/attack/hand/attack_mobile_client009_session01_mobile_video_controlled.mov", "mobile_replay"),
    ("replay", "train/real/client001_session01_webcam_authenticate_adverse_1.mov", None),
    # MSU-MFSD
    ("msu", "scene01/attack/attack_client001_android_SD_printed_photo_scene01.mp4", "print"),
    ("msu", "scene01/attack/attack_client002_laptop_HD_ipad_video_scene01.mov", "ipad_replay"),
    ("msu", "scene01/attack/attack_client002_laptop_HD_iphone_video_scene01.mov", "iphone_replay"),
    ("msu", "scene01/real/real_client001_android_SD_scene01.mp4", None),
    ("generic", "attack/attack_print_client001.avi", None),
])
def test_attack_type_from_the_datasets_naming(dataset, rel, kind):
    assert ATTACKS[dataset](rel) == kind

"""Named MediaPipe landmark indices: 478-point face mesh (with irises), 21-point hands, 33-point pose.

"Right" and "left" are the subject's: the subject's right eye (33 / 133 / iris 468) is on the image
left for an unmirrored frame.
"""

# ---------------------------------------------------------------- face mesh indices

FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # fmt: skip
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_UPPER_LID = (33, 246, 161, 160, 159, 158, 157, 173, 133)  # outer -> inner corner
LEFT_UPPER_LID = (263, 466, 388, 387, 386, 385, 384, 398, 362)
RIGHT_BROW = (46, 53, 52, 65, 55)  # lower edge, outer -> inner
LEFT_BROW = (276, 283, 282, 295, 285)

RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER = 33, 133, 362, 263
RIGHT_IRIS, LEFT_IRIS = 468, 473
NOSE_TIP = 1
NOSE_BRIDGE = 168
UPPER_LIP, LOWER_LIP = 13, 14  # inner lip midpoints
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
FOREHEAD = 10
CHIN = 152
RIGHT_CHEEK, LEFT_CHEEK = 234, 454  # face-oval points at cheek height
RIGHT_CHEEKBONE, LEFT_CHEEKBONE = 50, 280  # where blush and cheek stickers sit

# ---------------------------------------------------------------- hand and pose indices

WRIST = 0
FINGERTIPS = (4, 8, 12, 16, 20)
INDEX_TIP = 8
PALM_CENTER = 9
POSE_NOSE = 0
POSE_LEFT_SHOULDER, POSE_RIGHT_SHOULDER = 11, 12
POSE_LEFT_WRIST, POSE_RIGHT_WRIST = 15, 16
POSE_LEFT_HIP, POSE_RIGHT_HIP = 23, 24

__all__ = [
    "CHIN",
    "FACE_OVAL",
    "FINGERTIPS",
    "FOREHEAD",
    "INDEX_TIP",
    "LEFT_BROW",
    "LEFT_CHEEK",
    "LEFT_CHEEKBONE",
    "LEFT_EYE",
    "LEFT_EYE_INNER",
    "LEFT_EYE_OUTER",
    "LEFT_IRIS",
    "LEFT_UPPER_LID",
    "LIPS_INNER",
    "LIPS_OUTER",
    "LOWER_LIP",
    "MOUTH_LEFT",
    "MOUTH_RIGHT",
    "NOSE_BRIDGE",
    "NOSE_TIP",
    "PALM_CENTER",
    "POSE_LEFT_HIP",
    "POSE_LEFT_SHOULDER",
    "POSE_LEFT_WRIST",
    "POSE_NOSE",
    "POSE_RIGHT_HIP",
    "POSE_RIGHT_SHOULDER",
    "POSE_RIGHT_WRIST",
    "RIGHT_BROW",
    "RIGHT_CHEEK",
    "RIGHT_CHEEKBONE",
    "RIGHT_EYE",
    "RIGHT_EYE_INNER",
    "RIGHT_EYE_OUTER",
    "RIGHT_IRIS",
    "RIGHT_UPPER_LID",
    "UPPER_LIP",
    "WRIST",
]
